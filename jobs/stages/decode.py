"""Stage 1: decode and sample (stateless, CPU): work items -> uint8 clips + what the decoder saw."""
from __future__ import annotations

import collections
import os

import numpy as np

from jobs.stages.items import PASSED_ON

# Decoding yields the CPU to the model where they share a node: the model's threads wait for
# each other, so one preempted thread stalls them all, while decoding only has to keep up.
DECODE_NICENESS = 10


def decode_videos(batch: dict[str, np.ndarray], *, num_frames: int, timeout: float,
                  max_pixels: int | None, resize: str = "exact") -> dict[str, np.ndarray]:
    from jobs.listing import local_path
    from stam_core import VideoError, read_clip
    from stam_core.frames import CROP

    lower_priority()  # before read_clip starts its decode worker process, which inherits it
    n = len(batch["video_uri"])
    frames = np.zeros((n, num_frames, CROP, CROP, 3), dtype=np.uint8)
    out: dict[str, list] = collections.defaultdict(list)
    for i in range(n):
        uri = str(batch["video_uri"][i])
        start, end = float(batch["start_s"][i]), float(batch["end_s"][i])
        if batch["error_kind"][i]:  # failed in an earlier stage: pass the reason on
            _append_decode(out, ok=False, error=str(batch["error"][i]), error_kind=str(batch["error_kind"][i]))
            continue
        try:
            clip = read_clip(local_path(uri), num_frames, start=None if start < 0 else start,
                             end=None if end < 0 else end, timeout=timeout, max_pixels=max_pixels,
                             resize=resize)
        except VideoError as exc:
            _append_decode(out, ok=False, error=str(exc), error_kind=exc.kind)
            continue
        frames[i] = clip.frames
        info = clip.info
        _append_decode(out, ok=True, error="", error_kind="", duration_s=info.duration_s, fps=info.fps,
                       width=info.width, height=info.height, codec=info.codec, decoder=info.decoder,
                       frame_indices=np.asarray(clip.indices, np.int32),
                       frame_timestamps=np.asarray(clip.timestamps, np.float64),
                       warnings="\n".join(clip.warnings or ()), resize=clip.resize,
                       decode_cpu_ms=clip.decode_cpu_ms)
    result = {k: np.asarray(v) for k, v in out.items() if k not in ("frame_indices", "frame_timestamps")}
    # Fixed dtypes and widths: Ray must be able to concatenate blocks from different tasks.
    result["frame_indices"] = _stack(out["frame_indices"], num_frames, np.int32)
    result["frame_timestamps"] = _stack(out["frame_timestamps"], num_frames, np.float64)
    for key in PASSED_ON:
        result[key] = batch[key]
    result["frames"] = frames
    result["_decode_node"] = np.full(n, node_id())
    return result


def lower_priority() -> None:
    if hasattr(os, "setpriority"):  # absolute, so a reused Ray worker does not sink further
        os.setpriority(os.PRIO_PROCESS, 0, max(DECODE_NICENESS, os.getpriority(os.PRIO_PROCESS, 0)))


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _append_decode(out, *, ok, error, error_kind, duration_s=np.nan, fps=np.nan, width=-1, height=-1,
                   codec="", decoder="", frame_indices=None, frame_timestamps=None, warnings="", resize="",
                   decode_cpu_ms=np.nan):
    for key, value in (("ok", ok), ("error", error), ("error_kind", error_kind), ("duration_s", duration_s),
                       ("fps", fps), ("width", width), ("height", height), ("codec", codec),
                       ("decoder", decoder), ("frame_indices", frame_indices),
                       ("frame_timestamps", frame_timestamps), ("warnings", warnings), ("resize", resize),
                       ("decode_cpu_ms", decode_cpu_ms)):
        out[key].append(value)


def _stack(values: list, num_frames: int, dtype) -> np.ndarray:
    # Error rows carry -1 here and become nulls in the Labeler.
    return np.stack([np.full(num_frames, -1, dtype) if v is None else np.asarray(v, dtype) for v in values])
