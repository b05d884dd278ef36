"""Window planning and the video-level row derived from windows."""
import datetime as dt

import pyarrow as pa
import pytest

from jobs.segments import VIDEO_LEVEL, VideoLevel, plan_windows


@pytest.mark.parametrize("duration, window, stride, expected", [
    (25, 10, None, [(0, 10), (10, 20), (20, 25)]),      # last 5 s >= W/2: its own window
    (24, 10, None, [(0, 10), (10, 24)]),                # last 4 s < W/2: merged into the one before
    (3, 10, None, [(0, 3)]),                            # shorter than a window: one window, all of it
    (20, 10, 5, [(0, 10), (5, 15), (10, 20)]),          # overlapping windows stop at the end
    (0, 10, None, []),
])
def test_plan_windows(duration, window, stride, expected):
    assert plan_windows(duration, window, stride) == [(float(a), float(b)) for a, b in expected]


def test_plan_windows_rejects_bad_sizes():
    with pytest.raises(ValueError):
        plan_windows(10, 0)


def window_rows(uri, probs_list, statuses):
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist([
        {"video_uri": uri, "segment_index": i, "status": st, "error": None if st == "ok" else "bad",
         "error_kind": None if st == "ok" else "format_error", "duration_s": 30.0, "fps": 25.0, "width": 64,
         "height": 48, "codec": "h264", "decoder": "pyav", "labelled_at": at, "segment_start_s": 10.0 * i,
         "segment_end_s": 10.0 * i + 10, "_num_segments": len(probs_list), "_probs": p}
        for i, (p, st) in enumerate(zip(probs_list, statuses))])


def test_video_level_row_is_mean_of_window_probabilities():
    agg = VideoLevel(["a", "b", "c"], top_k=2)
    rows = window_rows("v", [[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], None], ["ok", "ok", "error"])
    assert agg.add(rows.slice(0, 2)) == []  # incomplete until every window arrived
    (video,) = agg.add(rows.slice(2, 1))
    assert video["segment_index"] == VIDEO_LEVEL and video["status"] == "ok"
    assert video["labels"] == ["a", "b"] and video["scores"] == pytest.approx([0.4, 0.35])
    assert (video["segment_start_s"], video["segment_end_s"]) == (0.0, 30.0)


def test_video_level_row_of_all_failed_windows_is_an_error_and_flush_finishes_partial_videos():
    agg = VideoLevel(["a", "b"], top_k=1)
    (video,) = agg.add(window_rows("v", [None], ["error"]))
    assert video["status"] == "error" and video["labels"] is None
    assert agg.add(window_rows("w", [[0.9, 0.1], [0.9, 0.1]], ["ok", "ok"]).slice(0, 1)) == []
    (partial,) = agg.flush()
    assert partial["video_uri"] == "w" and partial["labels"] == ["a"]
