"""Stage 0, --window-seconds only: one work item per window of each video (CPU task)."""
from __future__ import annotations

import collections

import numpy as np

from jobs.segments import VIDEO_LEVEL, plan_windows
from jobs.stages.decode import lower_priority


def expand_windows(batch: dict[str, np.ndarray], *, window: float, stride: float | None,
                   timeout: float, max_pixels: int | None) -> dict[str, np.ndarray]:
    from jobs.listing import local_path
    from stam_core import VideoError, probe_video

    lower_priority()
    out: dict[str, list] = collections.defaultdict(list)
    for i in range(len(batch["video_uri"])):
        item = {k: batch[k][i] for k in batch}
        try:
            if item["error_kind"]:  # failed in listing: its one row is video-level
                raise VideoError(str(item["video_uri"]), "")
            probe = probe_video(local_path(str(item["video_uri"])), timeout=timeout, max_pixels=max_pixels)
            windows = plan_windows(probe.duration_s, window, stride)
            if not windows:
                raise VideoError(str(item["video_uri"]), "zero duration: nothing to window")
        except VideoError as exc:
            # Failed before windowing: one video-level error row carries the reason.
            if not item["error_kind"]:
                item.update(error=str(exc), error_kind=exc.kind)
            item.update(segment_index=VIDEO_LEVEL)
            windows = [(-1.0, -1.0)]
        for k, (start, end) in enumerate(windows):
            row = dict(item)
            if start >= 0:
                row.update(segment_index=k, start_s=start, end_s=end, num_segments=len(windows))
            for key, value in row.items():
                out[key].append(value)
    return {k: np.asarray(v) for k, v in out.items()}
