"""The decord reader, used only when asked for (``decoder="decord"``; see docs/decoding.md).

decord itself is imported only when a clip is read with it. Must not import torch.
"""
from __future__ import annotations

import io
import re
from typing import Any

import numpy as np

from stam_core.errors import DEFAULT_MAX_PIXELS, VideoFormatError
from stam_core.video.clip import Clip, Source, duration_warnings
from stam_core.video.frames import SamplingPlan, to_model_input
from stam_core.video.pyav_reader import PyAVReader
from stam_core.video.sources import open_input


class DecordReader:
    """decord's VideoReader: scans every packet when it opens, so positions are exact.

    Used only when asked for (see docs/decoding.md). decord (FFmpeg 4 inside) turns MP4
    pictures by their rotation itself but ignores Matroska/WebM rotation; there the
    orientation PyAV reads from the container is applied.
    """

    def __init__(self, name: str, source: Source, filesystem: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.name, self.source, self.filesystem, self.max_pixels = name, source, filesystem, max_pixels

    def sample(self, num_frames: int, start: float | None, end: float | None) -> Clip:
        import decord

        # The PyAV probe applies max_pixels and the still-picture check before decord opens it.
        with PyAVReader(self.name, self.source, self.filesystem, self.max_pixels) as probe:
            orient = probe.first_orientation()
            if orient.flipped:  # decord's FFmpeg 4 reads the angle only
                raise VideoFormatError(self.name, "decord cannot show a mirrored picture; use decoder='pyav'")
            meta = probe.info(orient, decoder="decord")
            coded = (probe.stream.codec_context.height, probe.stream.codec_context.width)
            mp4 = probe.container.format.name.startswith("mov")
        target, _, _ = open_input(self.name, self.source, self.filesystem)
        if not isinstance(target, str):
            opened = target
            target.seek(0)
            target = io.BytesIO(target.read())  # decord reads file objects whole anyway
            if opened is not self.source:
                opened.close()
        try:
            reader = decord.VideoReader(target, num_threads=1)
            stamps, ends = reader.get_frame_timestamp(np.arange(len(reader))).T
        except decord.DECORDError as exc:
            raise VideoFormatError(self.name, f"decord cannot open it: {_decord_reason(exc)}") from exc
        if len(stamps) == 0:
            raise VideoFormatError(self.name, "no decodable video frame")
        times = stamps - stamps[0]
        plan = SamplingPlan.make(self.name, num_frames, meta.duration_s, start, end)
        slack = 1 / meta.fps if meta.fps else 0.0
        indices = plan.choose(self.name, times, float(ends[-1] - stamps[0]) + slack)
        try:
            batch = reader.get_batch(indices).asnumpy()
        except decord.DECORDError as exc:
            raise VideoFormatError(self.name, f"decord cannot decode it: {_decord_reason(exc)}") from exc
        if orient.rotation in (90, 270):
            turned = batch.shape[1:3] != coded  # decord turned it (MP4) or not (Matroska)
        else:
            turned = mp4  # a 180-degree turn keeps the shape: decord turns MP4s only
        frames = np.stack([to_model_input(frame if turned else orient(frame)) for frame in batch])
        meta.frame_count, meta.frame_count_exact = len(stamps), True
        meta.frames_decoded = meta.packets_read = meta.seeks = -1  # decord does not say
        meta.repeated = len(set(indices)) < num_frames
        return Clip(frames, indices, [float(times[i]) for i in indices], meta, duration_warnings(meta))


def _decord_reason(exc: Exception) -> str:
    # "[12:00:00] /github/workspace/src/video/video_reader.cc:151: Check failed: ... ERROR why"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if " ERROR " in text:
        return text.rsplit(" ERROR ", 1)[1]
    return re.sub(r"^\[[^]]*\] \S+:\d+: ", "", text)
