"""Top-k of class probabilities: the one rule both the model stage (per clip) and the
video-level row (the mean of its windows) use, so the two never rank differently."""
from __future__ import annotations

import numpy as np


def top_k(probs: np.ndarray, k: int, class_names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class ids (int32), names (object) and scores (float32) of the ``k`` most probable
    classes of each row of ``probs`` [n, classes], best first; ties keep the lower class id
    (a stable sort, so reruns and the two callers agree)."""
    probs = np.asarray(probs)  # ranked in its own precision (a window mean is float64)
    ids = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, probs.shape[1])].astype(np.int32)
    names = np.asarray(class_names, dtype=object)[ids]
    return ids, names, np.take_along_axis(probs, ids, axis=1).astype(np.float32)
