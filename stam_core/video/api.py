"""Decode videos and sample the frames STAM sees: ``read_clip`` and ``probe_video``.

Sampling rule: the video (or the ``start``/``end`` window) is divided into ``num_frames``
equal segments by presentation time; sample i comes from the middle half of segment i
(``|t_i - centre_i| <= duration / (4 * num_frames)``). When the container's index shows a
keyframe inside that half which decoding has not passed yet, the decoder seeks to it and
takes it (one frame decoded); otherwise, where frames are dense, it takes the reference
frame nearest the centre (non-reference frames are not decoded at all; a middle half with no
reference frame is decoded whole and gives the frame nearest the centre), and where they are
sparse the frame nearest the centre. A segment whose middle half holds no frame (very short
or variable-frame-rate videos) takes the frame on screen at its centre. Frames are converted
to RGB in display orientation and transformed as in the official STAM evaluation: resize the
shorter side to 256 (PIL bilinear), centre crop 224x224 (``resize="exact"``), or scaled by
swscale in YUV straight to size (``resize="fast"``). Each Clip says what it cost in CPU time.

Decoding runs in a separate worker process with a hard time limit and a memory limit unless
``timeout=None`` (see ``stam_core.video.decode_worker``). Streams whose coded picture exceeds
``max_pixels`` are refused from the header, before any frame is decoded. Why PyAV is the
default decoder and decord is only used on request, with the measurements behind it:
docs/decoding.md.

Layout of ``stam_core.video``, top down (each module imports only those below it): this
module, ``api``, is the API (argument checks, in-process or through the worker), re-exported
by the package; ``decode_worker`` runs a call in the worker process (``decode_child``);
``reading`` reads in-process (what the worker runs); the readers are ``pyav_reader`` with
``pyav_sampler`` (the default) and ``decord_reader``; ``sources`` opens paths, S3 objects,
bytes and file objects; orientation, the model transform (``to_model_input``) and the
sampling plan are in ``frames``; ``Clip``, ``ClipInfo``, ``Source`` and ``source_name`` in
``clip``, the bottom. The errors are ``stam_core.errors``.

None of these modules may import torch: the decode worker imports them and should start fast.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from stam_core.errors import DEFAULT_MAX_PIXELS
from stam_core.storage import pyarrow_reads_key_exactly
from stam_core.video import decode_worker
from stam_core.video.clip import Clip, ClipInfo, Source
from stam_core.video.reading import probe_here, read_clip_here

log = logging.getLogger(__name__)

DECODERS = ("auto", "pyav", "decord")
RESIZES = ("exact", "fast")


# ---- public entry points -----------------------------------------------------------------

def read_clip(source: Source, num_frames: int = 16, *, start: float | None = None, end: float | None = None,
              timeout: float | None = 60.0, decoder: str = "auto", filesystem: Any = None,
              max_pixels: int | None = DEFAULT_MAX_PIXELS, memory_limit: int | None = None,
              resize: str = "exact") -> Clip:
    """Sample ``num_frames`` frames of a video as the model's input.

    source: a local path, ``s3://bucket/key`` (pyarrow S3, configured by the standard AWS
    environment including ``AWS_ENDPOINT_URL``; or pass a pyarrow ``filesystem``), bytes,
    or a seekable binary file object (read at absolute offsets; with a timeout the worker
    reads it through the calling process, only the byte ranges it needs).
    start/end: seconds from the first frame; sample only that window.
    timeout: hard limit in seconds, enforced by killing the decode worker process;
    None decodes in this process with no limit.
    decoder: "auto" (PyAV), "pyav" or "decord".
    max_pixels: the largest coded picture (width x height from the stream header) accepted;
    larger streams raise ``VideoTooLargeError`` before any frame is decoded. None: no limit.
    memory_limit: bytes of memory the decode worker may use for this call; None derives it
    from max_pixels (``decode_worker.decode_memory_limit``; no limit when max_pixels is None).
    Only the worker is limited: with ``timeout=None`` nothing is.
    resize: "exact" (default): the official transform (RGB conversion at full size, PIL
    bilinear resize, centre crop); "fast": swscale scales the YUV picture straight to the
    resized size while converting it to RGB, then crops (mean absolute difference from the
    official transform about 1 grey level; PyAV only). ``clip.resize`` records it.

    Raises a ``VideoError`` subclass naming the source and the reason for any input that
    cannot be decoded; ``VideoTimeoutError`` when the time limit is exceeded,
    ``VideoOutOfMemoryError`` when the memory limit is.
    """
    _check_args(num_frames, start, end, timeout, decoder, max_pixels, memory_limit, resize)
    _check_s3_key(source, filesystem)
    if timeout is None:
        return read_clip_here(source, num_frames, start=start, end=end, decoder=decoder, filesystem=filesystem,
                              max_pixels=max_pixels, resize=resize)
    return decode_worker.call("read_clip", source, timeout, filesystem=filesystem,
                              memory_limit=_memory_limit(max_pixels, memory_limit), num_frames=num_frames,
                              start=start, end=end, decoder=decoder, max_pixels=max_pixels, resize=resize)


def probe_video(source: Source, *, timeout: float | None = 60.0, filesystem: Any = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, memory_limit: int | None = None) -> ClipInfo:
    """Metadata of a video (duration, frame rate, size, codec, rotation) without sampling it.

    Reads the container header (PyAV) and decodes the first frame only (rotation is carried
    in frame side data). Same sources, limits and errors as ``read_clip``.
    """
    _check_args(1, None, None, timeout, "pyav", max_pixels, memory_limit)
    _check_s3_key(source, filesystem)
    if timeout is None:
        return probe_here(source, filesystem=filesystem, max_pixels=max_pixels)
    return decode_worker.call("probe_video", source, timeout, filesystem=filesystem,
                              memory_limit=_memory_limit(max_pixels, memory_limit), max_pixels=max_pixels)


def _memory_limit(max_pixels: int | None, memory_limit: int | None) -> int | None:
    if memory_limit is not None:
        return int(memory_limit)
    return decode_worker.decode_memory_limit(max_pixels)


def _check_args(num_frames, start, end, timeout, decoder, max_pixels=None, memory_limit=None,
                resize="exact") -> None:
    if decoder == "auto":
        _log_auto_choice()
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    if resize == "fast" and decoder == "decord":
        raise ValueError("resize='fast' scales in YUV with swscale: PyAV only (decord returns RGB)")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end is not None and end <= (start or 0):
        raise ValueError(f"end ({end}) must be after start ({start or 0})")
    for key, value in (("max_pixels", max_pixels), ("memory_limit", memory_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{key} must be a positive integer or None, got {value!r}")


def _check_s3_key(source: Source, filesystem: Any) -> None:
    """pyarrow's S3 filesystem would read another object for some valid keys: refuse those."""
    import pyarrow.fs as pafs

    if not (isinstance(source, str) and source.startswith("s3://")):
        return
    if (filesystem is None or isinstance(filesystem, pafs.S3FileSystem)) \
            and not pyarrow_reads_key_exactly(source[len("s3://"):]):
        raise ValueError(f"{source}: pyarrow's S3 filesystem cannot read a key with an empty, '.' or '..' path "
                         "component exactly (it would ask for another key); pass a seekable file object that "
                         "reads the key as it is")


@functools.lru_cache(maxsize=None)
def _log_auto_choice() -> None:
    # A choice made for the user is said once per process (and recorded in ClipInfo.decoder).
    log.info("decoder='auto' decodes with PyAV; decord only when asked for (docs/decoding.md)")
