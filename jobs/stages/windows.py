"""Stage 0, --window-seconds only: a work item per window of each video (stateless, CPU)."""
from __future__ import annotations

import pyarrow as pa

from jobs.segments import VIDEO_LEVEL, plan_windows
from jobs.stages.decode import lower_priority
from jobs.stages.records import WORK_ITEM


def expand_windows(batch: pa.Table, *, window: float, stride: float | None, timeout: float,
                   max_pixels: int | None) -> pa.Table:
    from jobs.storage import local_path
    from stam_core import VideoError, probe_video

    lower_priority()
    out: list[dict] = []
    for item in batch.select(WORK_ITEM.names).to_pylist():
        try:
            if item["error_kind"]:  # failed in listing: its one row is video-level
                raise VideoError(item["video_uri"], "")
            probe = probe_video(local_path(item["video_uri"]), timeout=timeout, max_pixels=max_pixels)
            windows = plan_windows(probe.duration_s, window, stride)
            if not windows:
                raise VideoError(item["video_uri"], "zero duration: nothing to window")
        except VideoError as exc:
            # Failed before windowing: one video-level error row carries the reason.
            if not item["error_kind"]:
                item.update(error=str(exc), error_kind=exc.kind)
            out.append(dict(item, segment_index=VIDEO_LEVEL))
            continue
        out.extend(dict(item, segment_index=k, start_s=start, end_s=end, num_segments=len(windows))
                   for k, (start, end) in enumerate(windows))
    return pa.Table.from_pylist(out, schema=WORK_ITEM)
