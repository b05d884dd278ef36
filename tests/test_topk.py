"""jobs.topk.top_k: the one top-k rule of the model stage and the video-level row."""
import numpy as np

from jobs.topk import top_k


def test_top_k_orders_best_first_and_breaks_ties_by_class_id():
    probs = np.array([[0.1, 0.4, 0.4, 0.1], [0.7, 0.1, 0.05, 0.15]], np.float32)
    ids, names, scores = top_k(probs, 2, ["a", "b", "c", "d"])
    assert ids.dtype == np.int32 and ids.tolist() == [[1, 2], [0, 3]]
    assert names.tolist() == [["b", "c"], ["a", "d"]]
    assert scores.dtype == np.float32 and np.allclose(scores, [[0.4, 0.4], [0.7, 0.15]])


def test_top_k_is_capped_by_the_number_of_classes_and_takes_no_rows():
    ids, names, _ = top_k(np.array([[0.2, 0.8]]), 5, ["x", "y"])
    assert ids.tolist() == [[1, 0]] and names.tolist() == [["y", "x"]]
    empty = top_k(np.zeros((0, 3), np.float32), 2, ["a", "b", "c"])
    assert [a.shape for a in empty] == [(0, 2)] * 3
