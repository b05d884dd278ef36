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

from jobs.columns import IDENTITY, KEY, SOURCE, STREAM_FACTS
from jobs.text import plural
from jobs.topk import top_k

MIN_LAST_FRACTION = 0.5
VIDEO_LEVEL = -1
MAX_VIDEO_WARNINGS = 10
# What a video-level row takes from its windows: who labelled which file (and, when ok, STREAM_FACTS).
VIDEO_IDENTITY = (*(c for c in KEY if c != "segment_index"), *SOURCE, *IDENTITY)


def video_row_index(mode: str) -> int:
    """The segment_index of a video's own row: 0 in video mode, VIDEO_LEVEL in window mode."""
    return 0 if mode == "video" else VIDEO_LEVEL


def plan_windows(duration: float, window: float, stride: float | None = None,
                 limit: int | None = None) -> list[tuple[float, float]]:
    """The (start, end) windows of a video of ``duration`` seconds. With a ``limit``, planning
    stops after ``limit + 1`` windows: more than ``limit`` says the video is over it, without
    building a list as long as the video (a header may claim any duration)."""
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
        if end >= duration or (limit is not None and len(windows) > limit):
            break
        start += stride
    return windows


def video_warnings(rows: list[dict]) -> list[str] | None:
    """The video-level row's warnings: each distinct line of its windows', in window order (a
    header claiming more than the stream holds is said by every window: once here), at most
    MAX_VIDEO_WARNINGS of them; None when the windows had none."""
    lines = list(dict.fromkeys(line for r in rows for line in (r.get("warnings") or ())))
    if len(lines) > MAX_VIDEO_WARNINGS:
        lines = lines[:MAX_VIDEO_WARNINGS - 1] + [f"... and {len(lines) - MAX_VIDEO_WARNINGS + 1} more in the windows"]
    return lines or None


class VideoLevel:
    """Holds a windowed video's rows on the driver until all its windows have arrived.

    ``add`` returns the rows of the videos it completed: their window rows followed by the
    video-level row, so a video is committed whole or not at all. ``flush`` ends the run:
    videos some of whose windows never came back (their Ray tasks failed past retries) get an
    error video-level row of kind ``incomplete`` naming the missing windows, never ``ok``.
    """

    def __init__(self, class_names: list[str], top_k: int, embeddings: bool = False):
        self.class_names, self.top_k, self.embeddings = class_names, top_k, embeddings
        self.pending: dict[str, dict] = {}

    def add(self, rows: pa.Table, facts: pa.Table) -> list[dict]:
        """Feed window rows (output schema) and their FACTS (num_segments, window_probs);
        returns the finished videos' rows."""
        done: list[dict] = []
        for row, expected, probs in zip(rows.to_pylist(), facts["num_segments"].to_pylist(),
                                        facts["window_probs"].to_pylist()):
            if row["segment_index"] == VIDEO_LEVEL:
                done.append(row)  # failed before windowing: its one row is video-level
                continue
            state = self.pending.setdefault(row["video_uri"], {"rows": {}, "probs": {}, "expected": expected})
            state["rows"][row["segment_index"]] = row  # a retried task's duplicate replaces the first
            state["probs"][row["segment_index"]] = probs
            if len(state["rows"]) >= state["expected"]:
                done.extend(self._finish(self.pending.pop(row["video_uri"])))
        return done

    def flush(self) -> list[dict]:
        """Rows of the videos some of whose windows never arrived."""
        out = [row for state in self.pending.values() for row in self._finish(state)]
        self.pending.clear()
        return out

    def _finish(self, state: dict) -> list[dict]:
        windows = [state["rows"][k] for k in sorted(state["rows"])]
        return windows + [self._video_row(windows, state["probs"], state["expected"])]

    def _video_row(self, rows: list[dict], probs: dict[int, list], expected: int) -> dict:
        """The video-level row: what the video's windows say about the whole video.

        It takes the run's identity fields from a window, never a window's bounds or decode
        facts: the row covers 0..duration when a window decoded, and has no bounds otherwise.
        """
        first = rows[0]
        ok = [r for r in rows if r["status"] == "ok"]
        video = dict.fromkeys(first)  # every column, null unless set below
        video.update({key: first[key] for key in VIDEO_IDENTITY if key in first})
        duration = max((r["duration_s"] for r in ok if r["duration_s"] is not None), default=None)
        video.update(segment_index=VIDEO_LEVEL, labelled_at=max(r["labelled_at"] for r in rows),
                     segment_start_s=None if duration is None else 0.0, segment_end_s=duration, duration_s=duration,
                     warnings=video_warnings(rows))
        missing = sorted(set(range(expected)) - {r["segment_index"] for r in rows})
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            video.update(status="error", error_kind="incomplete",
                         error=f"{first['video_uri']}: {len(missing)} of {plural(expected, 'window')} never came back "
                               f"from their Ray tasks (windows {shown}); the next run labels the video again")
            return video
        if not ok:
            video.update(status="error", error=first["error"], error_kind=first["error_kind"])
            return video
        mean = np.mean([probs[r["segment_index"]] for r in ok], axis=0)
        ids, names, scores = top_k(mean[None, :], self.top_k, self.class_names)
        video.update(status="ok", labels=names[0].tolist(), scores=scores[0].tolist(), class_ids=ids[0].tolist(),
                     probs=mean.astype(np.float32).tolist())
        for key in STREAM_FACTS:  # the same decoder and stream for every window
            video[key] = ok[0][key]
        if self.embeddings:
            video["embedding"] = np.mean([r["embedding"] for r in ok], axis=0).astype(np.float32).tolist()
        return video

