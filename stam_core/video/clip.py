"""What decoding produces and takes: ``Clip``, ``ClipInfo``, the ``Source`` type, and how
errors name a source. The bottom of the decoding modules: imports nothing of stam_core.
Must not import torch (the decode worker imports it and should start fast).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

Source = Union[str, Path, bytes, bytearray, memoryview, BinaryIO]

INDEXED_FORMATS = ("mov", "matroska")  # FFmpeg demuxer names: MP4/MOV/3GP, Matroska/WebM


@dataclass
class ClipInfo:
    """What is known about a video stream. Sizes are in display orientation."""

    duration_s: float
    fps: float  # average frame rate
    frame_count: int
    width: int
    height: int
    codec: str
    rotation: int  # degrees the player turns the stored picture clockwise (0, 90, 180, 270)
    decoder: str  # "pyav" or "decord"
    repeated: bool = False  # read_clip: fewer distinct frames than requested, so some repeat
    flipped: bool = False  # the display matrix also mirrors the picture
    container: str = ""
    pix_fmt: str = ""
    frame_count_exact: bool = True  # False: duration x fps (the container has no frame count)
    # The container's duration where the stream ends well before it (a damaged or crafted
    # header); duration_s is then where the stream ends. None: the claim holds.
    claimed_duration_s: float | None = None
    # Work done by read_clip (cost checks without timing): frames the decoder produced,
    # packets it read from the container, seeks; -1 where the decoder does not say (decord).
    frames_decoded: int = 0
    packets_read: int = 0
    seeks: int = 0


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [num_frames, 224, 224, 3], RGB
    indices: list[int]  # 0-based position of each sample in the stream, display order
    timestamps: list[float]  # seconds from the first frame
    info: ClipInfo = field(repr=False)
    # Damage met while decoding that did not make the read fail (e.g. "64 undecodable packets
    # between 2.4 s and 7.5 s"); empty when clean. The rule: docs/decoding.md ("Damaged streams").
    warnings: list[str] = field(default_factory=list)
    resize: str = "exact"  # the resize path used: "exact" (PIL, the official transform) or "fast" (swscale)
    # Cost of this one call, in CPU milliseconds of the process that decoded it (the decode
    # worker's, or this thread's with timeout=None): the whole read, and its split into
    # decode_ms (opening, demuxing, decoding: the rest), convert_ms (YUV to RGB) and
    # resize_ms (orientation, resize and crop; with resize="fast" the one swscale call that
    # scales and converts, so convert_ms is 0). -1 where the decoder does not say (decord).
    decode_cpu_ms: float = 0.0
    decode_ms: float = 0.0
    convert_ms: float = 0.0
    resize_ms: float = 0.0


def duration_warnings(info: ClipInfo) -> list[str]:
    """The warning of a video whose container claims more than its stream holds; [] otherwise."""
    if info.claimed_duration_s is None:
        return []
    return [f"the container claims {info.claimed_duration_s:.3f} s but the stream ends at {info.duration_s:.3f} s "
            "(shorter than claimed)"]


def source_name(source: Source) -> str:
    """How errors name a source.

    A local path that is not valid UTF-8 (``os.fsdecode`` of its bytes holds surrogate
    escapes) is named with its odd bytes as ``\\xNN``: the message must stay printable and
    storable as UTF-8 (error rows are Parquet strings).
    """
    if isinstance(source, (str, Path)):
        return _printable(str(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    return f"<file object {name}>" if isinstance(name, str) else f"<file object {type(source).__name__}>"


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # surrogate escapes stand for the path's raw bytes: show those bytes
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates: show the code points
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
