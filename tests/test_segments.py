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


def test_plan_windows_stops_one_past_the_limit():
    # A header may claim any duration: planning never builds more than limit + 1 windows.
    assert len(plan_windows(86_400, 0.5, limit=10_000)) == 10_001
    assert plan_windows(25, 10, limit=3) == plan_windows(25, 10) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert len(plan_windows(24, 10, limit=1)) == 2  # 2 windows (the short tail merged) > 1
    assert len(plan_windows(24, 10, limit=2)) == 2


def test_plan_windows_rejects_bad_sizes():
    with pytest.raises(ValueError):
        plan_windows(10, 0)


def window_rows(uri, probs_list, statuses):
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist([
        {"video_uri": uri, "segment_index": i, "status": st, "error": None if st == "ok" else "bad",
         "error_kind": None if st == "ok" else "format_error", "duration_s": 30.0, "fps": 25.0, "width": 64,
         "height": 48, "codec": "h264", "decoder": "pyav", "resize": "exact", "labels": None, "labelled_at": at, "segment_start_s": 10.0 * i,
         "segment_end_s": 10.0 * i + 10, "num_segments": len(probs_list), "window_probs": p}
        for i, (p, st) in enumerate(zip(probs_list, statuses))])


def feed(agg, batch):
    """Window rows and their FACTS, as the committer passes them."""
    facts = ["num_segments", "window_probs"]
    return agg.add(batch.drop_columns(facts), batch.select(facts))


def test_video_level_row_is_mean_of_window_probabilities():
    agg = VideoLevel(["a", "b", "c"], top_k=2)
    rows = window_rows("v", [[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], None], ["ok", "ok", "error"])
    assert feed(agg, rows.slice(0, 2)) == []  # incomplete until every window arrived
    *windows, video = feed(agg, rows.slice(2, 1))  # the video's windows and its row, together
    assert [w["segment_index"] for w in windows] == [0, 1, 2]
    assert not any(k in ("num_segments", "window_probs") for w in windows for k in w)
    assert video["segment_index"] == VIDEO_LEVEL and video["status"] == "ok"
    assert video["labels"] == ["a", "b"] and video["scores"] == pytest.approx([0.4, 0.35])
    assert (video["segment_start_s"], video["segment_end_s"]) == (0.0, 30.0)


def test_a_retried_window_counts_once():
    agg = VideoLevel(["a", "b"], top_k=1)
    rows = window_rows("v", [[0.9, 0.1], [0.2, 0.8]], ["ok", "ok"])
    assert feed(agg, rows.slice(0, 1)) == [] and feed(agg, rows.slice(0, 1)) == []  # the same window twice
    assert len(feed(agg, rows.slice(1, 1))) == 3


def test_all_failed_windows_make_an_error_and_missing_windows_make_the_video_incomplete():
    agg = VideoLevel(["a", "b"], top_k=1)
    window, video = feed(agg, window_rows("v", [None], ["error"]))
    assert video["status"] == "error" and video["labels"] is None and video["error_kind"] == "format_error"
    # Window 1 of 3 never came back (its Ray task failed past retries): never an ok video row.
    rows = window_rows("w", [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]], ["ok", "ok", "ok"])
    assert feed(agg, rows.take([0, 2])) == []
    *windows, partial = agg.flush()
    assert [w["segment_index"] for w in windows] == [0, 2]
    assert partial["status"] == "error" and partial["error_kind"] == "incomplete" and partial["labels"] is None
    assert "1 of 3 windows" in partial["error"] and "windows 1" in partial["error"]


def test_the_video_row_takes_no_windows_bounds_or_decode_facts():
    """Not the first window's end, duration or decode time: the whole video's, or nothing."""
    agg = VideoLevel(["a", "b"], top_k=1)
    rows = window_rows("v", [[0.9, 0.1], [0.2, 0.8]], ["ok", "ok"]).append_column(
        "decode_cpu_ms", pa.array([5.0, 6.0], pa.float32()))
    *_, video = feed(agg, rows)
    assert (video["segment_start_s"], video["segment_end_s"], video["duration_s"]) == (0.0, 30.0, 30.0)
    assert video["decode_cpu_ms"] is None and (video["codec"], video["width"]) == ("h264", 64)
    failed = window_rows("w", [None, None], ["error", "error"])
    *_, video = feed(agg, failed)
    assert video["status"] == "error"
    assert all(video[k] is None for k in ("segment_start_s", "segment_end_s", "duration_s", "fps", "codec"))


def test_the_video_row_says_each_distinct_window_warning_once():
    claim = "the container claims 86400.000 s but the stream ends at 2.000 s (shorter than claimed)"
    agg = VideoLevel(["a", "b"], top_k=1)
    rows = window_rows("v", [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], ["ok", "ok", "ok"]).append_column(
        "warnings", pa.array([[claim], [claim, "1 undecodable packet at 1.2 s (of 9 packets read)"], None]))
    *windows, video = feed(agg, rows)
    assert video["warnings"] == [claim, "1 undecodable packet at 1.2 s (of 9 packets read)"]
    assert windows[0]["warnings"] == [claim]
    many = window_rows("w", [[0.9, 0.1]] * 12, ["ok"] * 12).append_column(
        "warnings", pa.array([[f"damage {i}"] for i in range(12)]))
    *_, video = feed(agg, many)
    assert video["warnings"] == [f"damage {i}" for i in range(9)] + ["... and 3 more in the windows"]
    *_, clean = feed(agg, window_rows("x", [[0.9, 0.1]], ["ok"]))
    assert clean["warnings"] is None


# ---- the windows stage -----------------------------------------------------------------------
def test_windows_come_from_the_stream_not_the_header_and_are_bounded(tmp_path):
    from jobs.stages.records import to_work_items
    from jobs.stages.windows import expand_windows
    from support.videogen import make_false_duration_mkv

    fake = make_false_duration_mkv(tmp_path / "claims_24h.mkv")  # 2 s of frames, a header claiming 24 h
    work = to_work_items(pa.table({"video_uri": [str(fake)], "source_size": [fake.stat().st_size],
                                   "source_version": ["v1"]}))
    items = expand_windows(work, window=0.5, stride=None, timeout=60, max_pixels=None, max_windows=10_000)
    assert items["segment_index"].to_pylist() == [0, 1, 2, 3]  # not 172,800
    assert items["end_s"].to_pylist() == [0.5, 1.0, 1.5, 2.0] and set(items["num_segments"].to_pylist()) == {4}
    # Over the bound: one video-level error row, too_long, naming the video and the option.
    (row,) = expand_windows(work, window=0.5, stride=None, timeout=60, max_pixels=None, max_windows=3).to_pylist()
    assert row["segment_index"] == VIDEO_LEVEL and row["error_kind"] == "too_long"
    assert row["error"].startswith(f"{fake}: 2.000 s in windows of 0.5 s") and "--max-windows" in row["error"]
