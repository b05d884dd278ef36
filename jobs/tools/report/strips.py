"""Thumbnails: a row's sampled frames re-read with ``stam_core.read_clip`` (same frame count,
same window bounds) and checked against the row's ``frame_indices``; any difference is stated,
since the pictures would then not be what the model saw."""
from __future__ import annotations

import base64
import concurrent.futures
import io
import multiprocessing
import os
from dataclasses import dataclass

import numpy as np

from jobs.tools.report.summary import Video

THUMB = 96  # thumbnail edge in pixels (the model sees 224x224)
CLI_WORKERS = min(4, os.cpu_count() or 1)  # `inspect --html` default: decode processes for thumbnails


@dataclass
class Strip:
    images: list[str]  # data: URIs
    note: str | None = None  # why the pictures are missing or not what the model saw


def read_strip(row: dict, timeout: float = 60.0) -> Strip:
    """Re-read a row's sampled frames as JPEG thumbnails and check they are the labelled ones."""
    import stam_core
    from jobs.stages.sources import open_video

    indices = list(row["frame_indices"] or [])
    if not indices:
        return Strip([], "no sampled frames recorded for this row")
    windowed = row["mode"] != "video"
    start = row["segment_start_s"] if windowed else None
    end = row["segment_end_s"] if windowed else None
    try:
        with open_video(row["video_uri"]) as source:  # the exact key, as the job read it
            clip = stam_core.read_clip(source, len(indices), start=start, end=end, timeout=timeout)
    except stam_core.VideoError as exc:
        return Strip([], f"thumbnails unavailable: {exc}")
    images = [_jpeg_data_uri(frame) for frame in clip.frames]
    got = [int(i) for i in clip.indices]
    note = None
    if got != [int(i) for i in indices]:
        note = (f"frame mismatch: re-reading gives frames {_short_list(got)} but the model saw "
                f"{_short_list(indices)} (the file changed since it was labelled, or decoding differs); "
                "these thumbnails are not exactly what was labelled")
    return Strip(images, note)


def _jpeg_data_uri(frame: np.ndarray) -> str:
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, dtype=np.uint8)).resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short_list(values, n: int = 8) -> str:
    values = [int(v) for v in values]
    return "[" + ", ".join(map(str, values[:n])) + (", …" if len(values) > n else "") + "]"


def read_strips(videos: list[Video], workers: int) -> dict[tuple[str, int], Strip]:
    """Thumbnails of every row shown; decoding dominates the report's time."""
    rows = []
    for v in videos:
        rows += [w for w in v.windows if w["status"] == "ok"] if v.windows else [v.row]
    if workers <= 1 or len(rows) <= 1:
        strips = [read_strip(r) for r in rows]
    else:
        # read_clip serves all threads of a process from one decode worker, so parallel
        # decoding takes processes. Spawned, not forked: this process holds pyarrow/S3 threads.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(rows)), mp_context=context) as pool:
            strips = list(pool.map(read_strip, rows, chunksize=4))
    return {(r["video_uri"], r["segment_index"]): s for r, s in zip(rows, strips)}

