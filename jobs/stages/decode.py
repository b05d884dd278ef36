"""Stage 1: decode and sample (stateless, CPU): work items -> decoded clips (jobs.stages.records)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.stages.priority import lower_priority
from jobs.stages.records import DECODE_INFO, WORK_ITEM, decoded_schema, frames_array


def decode_videos(batch: pa.Table, *, num_frames: int, timeout: float, max_pixels: int | None,
                  resize: str = "exact", node: str | None = None) -> pa.Table:
    """Decode each work item's clip; ``node`` (the Ray node it runs on, null outside Ray) goes in each row."""
    from jobs.stages.sources import open_video
    from stam_core import VideoError, read_clip
    from stam_core.video.frames import CROP

    lower_priority()  # before read_clip starts its decode worker process, which inherits it
    n = batch.num_rows
    frames = np.zeros((n, num_frames, CROP, CROP, 3), dtype=np.uint8)
    info: list[dict] = []
    errors, kinds = batch["error"].to_pylist(), batch["error_kind"].to_pylist()
    for i, item in enumerate(batch.select(["video_uri", "start_s", "end_s"]).to_pylist()):
        if kinds[i]:  # failed in an earlier stage: its reason is passed on
            info.append({"ok": False})
            continue
        try:
            with open_video(item["video_uri"]) as source:
                clip = read_clip(source, num_frames, start=item["start_s"], end=item["end_s"], timeout=timeout,
                                 max_pixels=max_pixels, resize=resize)
        except VideoError as exc:
            errors[i], kinds[i] = str(exc), exc.kind
            info.append({"ok": False})
            continue
        frames[i] = clip.frames
        seen = clip.info
        info.append({"ok": True, "duration_s": seen.duration_s, "fps": seen.fps, "width": seen.width,
                     "height": seen.height, "codec": seen.codec, "decoder": seen.decoder,
                     "frame_indices": list(clip.indices), "frame_timestamps": list(clip.timestamps),
                     "warnings": list(clip.warnings) or None, "resize": clip.resize,
                     "decode_cpu_ms": clip.decode_cpu_ms})
    for row in info:
        row["decode_node"] = node
    decoded = pa.Table.from_pylist(info, schema=DECODE_INFO)
    items = batch.select(WORK_ITEM.names).cast(WORK_ITEM)
    items = items.set_column(WORK_ITEM.get_field_index("error"), "error", pa.array(errors, pa.string()))
    items = items.set_column(WORK_ITEM.get_field_index("error_kind"), "error_kind", pa.array(kinds, pa.string()))
    ok = decoded["ok"].to_numpy(zero_copy_only=False)
    columns = {**{name: items[name] for name in items.column_names},
               **{name: decoded[name] for name in decoded.column_names},
               "frames": frames_array(frames, ok)}
    schema = decoded_schema(num_frames)
    return pa.table([columns[f.name] for f in schema], schema=schema)

