"""Stage 0, --window-seconds only: a work item per window of each video (stateless, CPU).

Windows are planned from the duration the stream really holds (``probe_video`` checks a
header's claim against the stream's end), and a video is never split into more than
``max_windows`` windows: one that would be is a single ``too_long`` error row, so no file,
crafted or broken, multiplies the work beyond that.
"""
from __future__ import annotations

import pyarrow as pa

from jobs.segments import VIDEO_LEVEL, plan_windows
from jobs.stages.priority import lower_priority
from jobs.stages.records import WORK_ITEM
from jobs.stages.sources import open_video


class VideoTooLong(Exception):
    """More windows than --max-windows: the video's one row is a ``too_long`` error."""

    kind = "too_long"


def expand_windows(batch: pa.Table, *, window: float, stride: float | None, timeout: float,
                   max_pixels: int | None, max_windows: int | None = None) -> pa.Table:
    from stam_core import VideoError, probe_video

    lower_priority()
    out: list[dict] = []
    for item in batch.select(WORK_ITEM.names).to_pylist():
        uri = item["video_uri"]
        try:
            if item["error_kind"]:  # failed in listing: its one row is video-level
                raise VideoError(uri, "")
            with open_video(uri) as source:
                probe = probe_video(source, timeout=timeout, max_pixels=max_pixels)
            windows = plan_windows(probe.duration_s, window, stride, limit=max_windows)
            if not windows:
                raise VideoError(uri, "zero duration: nothing to window")
            if max_windows is not None and len(windows) > max_windows:
                raise VideoTooLong(f"{uri}: {probe.duration_s:.3f} s in windows of {window:g} s every "
                                   f"{stride or window:g} s make more than {max_windows:,} windows (--max-windows)")
        except (VideoError, VideoTooLong) as exc:
            # Failed before windowing: one video-level error row carries the reason.
            if not item["error_kind"]:
                item.update(error=str(exc), error_kind=exc.kind)
            out.append(dict(item, segment_index=VIDEO_LEVEL))
            continue
        out.extend(dict(item, segment_index=k, start_s=start, end_s=end, num_segments=len(windows))
                   for k, (start, end) in enumerate(windows))
    return pa.Table.from_pylist(out, schema=WORK_ITEM)
