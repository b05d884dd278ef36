"""Segment labels for long videos: which windows to label, and the video-level row made from them.

Windows start every ``stride`` seconds and last ``window`` seconds. A last window shorter than
``window`` is kept when it is at least ``MIN_LAST_FRACTION`` of a window; otherwise it is merged
into the window before it (which then ends at the video's end). A video shorter than that
minimum is one window covering all of it.

The video-level row (``segment_index = -1``) averages the probabilities of the video's windows
that decoded, and takes its top-k from that mean.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

MIN_LAST_FRACTION = 0.5
VIDEO_LEVEL = -1


def plan_windows(duration: float, window: float, stride: float | None = None) -> list[tuple[float, float]]:
    if window <= 0 or (stride is not None and stride <= 0):
        raise ValueError("window and stride must be positive")
    stride = stride or window
    if duration <= 0:
        return []
    windows: list[tuple[float, float]] = []
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window, duration)
        if end - start < window * MIN_LAST_FRACTION and windows:
            windows[-1] = (windows[-1][0], duration)
            break
        windows.append((start, end))
        if end >= duration:
            break
        start += stride
    return windows


class VideoLevel:
    """Collects window rows per video on the driver and emits its video-level row when complete."""

    def __init__(self, class_names: list[str], top_k: int):
        self.class_names, self.top_k = class_names, top_k
        self.pending: dict[str, dict] = {}

    def add(self, rows: pa.Table) -> list[dict]:
        """Feed window rows (with internal columns _num_segments, _probs); returns finished video rows."""
        done = []
        for row in rows.to_pylist():
            if row["segment_index"] == VIDEO_LEVEL:
                continue  # the video failed before windowing: its one row is already video-level
            state = self.pending.setdefault(row["video_uri"], {"rows": [], "expected": row["_num_segments"]})
            state["rows"].append(row)
            if len(state["rows"]) >= state["expected"]:
                done.append(self._finish(self.pending.pop(row["video_uri"])["rows"]))
        return done

    def flush(self) -> list[dict]:
        """Videos some of whose windows never arrived: summarise what did."""
        out = [self._finish(state["rows"]) for state in self.pending.values()]
        self.pending.clear()
        return out

    def _finish(self, rows: list[dict]) -> dict:
        first = rows[0]
        ok = [r for r in rows if r["status"] == "ok"]
        video = {k: v for k, v in first.items() if not k.startswith("_")}
        video.update(segment_index=VIDEO_LEVEL, segment_start_s=0.0, frame_indices=None, frame_timestamps=None,
                     embedding=None, probs=None)
        if not ok:
            video.update(status="error", labels=None, scores=None, class_ids=None)
            return video
        mean = np.mean([r["_probs"] for r in ok], axis=0)
        top = np.argsort(-mean, kind="stable")[: self.top_k]
        duration = max((r["duration_s"] for r in ok if r["duration_s"] is not None), default=None)
        video.update(status="ok", error=None, error_kind=None, labels=[self.class_names[i] for i in top],
                     scores=mean[top].astype(np.float32).tolist(), class_ids=top.tolist(),
                     segment_end_s=duration, duration_s=duration, probs=mean.astype(np.float32).tolist(),
                     labelled_at=max(r["labelled_at"] for r in rows))
        for key in ("fps", "width", "height", "codec", "decoder"):
            video[key] = ok[0][key]
        return video
