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
``timeout=None`` (see ``stam_core.decode_worker``). Streams whose coded picture exceeds
``max_pixels`` are refused from the header, before any frame is decoded. Why PyAV is the
default decoder and decord is only used on request, with the measurements behind it:
docs/decoding.md.

Layout: this module is the API and the sources (paths, S3, bytes, file objects); the
readers are ``stam_core.pyav_reader`` (the default) and ``stam_core.decord_reader``;
orientation, the model transform (``to_model_input``) and the sampling plan are in
``stam_core.frames``.

None of these modules may import torch: the decode worker imports them and should start fast.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from stam_core.errors import (
    DEFAULT_MAX_PIXELS,
    VideoError,
    VideoFormatError,
    VideoNotFoundError,
    VideoOutOfMemoryError,
    VideoReadError,
)
from stam_core.frames import CROP, SHORT_SIDE, _VariableFrameRate, to_model_input  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

Source = Union[str, Path, bytes, bytearray, memoryview, BinaryIO]

DECODERS = ("auto", "pyav", "decord")
RESIZES = ("exact", "fast")
REMOTE_BUFFER = 1 << 20  # bytes per read from S3: one ranged GET each, so not too small
LOCAL_BUFFER = 1 << 16
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
    if timeout is None:
        return _read_clip(source, num_frames, start=start, end=end, decoder=decoder, filesystem=filesystem,
                          max_pixels=max_pixels, resize=resize)
    from stam_core import decode_worker

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
    if timeout is None:
        return _probe_video(source, filesystem=filesystem, max_pixels=max_pixels)
    from stam_core import decode_worker

    return decode_worker.call("probe_video", source, timeout, filesystem=filesystem,
                              memory_limit=_memory_limit(max_pixels, memory_limit), max_pixels=max_pixels)


def _memory_limit(max_pixels: int | None, memory_limit: int | None) -> int | None:
    if memory_limit is not None:
        return int(memory_limit)
    from stam_core.decode_worker import decode_memory_limit

    return decode_memory_limit(max_pixels)


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


@functools.lru_cache(maxsize=None)
def _log_auto_choice() -> None:
    # A choice made for the user is said once per process (and recorded in ClipInfo.decoder).
    log.info("decoder='auto' decodes with PyAV; decord only when asked for (docs/decoding.md)")


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


# ---- in-process implementation (also what the worker runs) -------------------------------

# The clock of Clip.decode_cpu_ms: this thread's CPU time in the calling process (decoding
# runs in the calling thread: one decoding thread, see pyav_reader); the decode worker sets
# time.process_time, its whole process, since decoding is all it does.
CPU_CLOCK = time.thread_time


def _read_clip(source: Source, num_frames: int, *, start: float | None, end: float | None, decoder: str,
               filesystem: Any = None, name: str | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, resize: str = "exact") -> Clip:
    clock = CPU_CLOCK
    began = clock()
    clip = _read_clip_uncounted(source, num_frames, start=start, end=end, decoder=decoder, filesystem=filesystem,
                                name=name, max_pixels=max_pixels, resize=resize)
    clip.decode_cpu_ms = 1000 * (clock() - began)
    if decoder == "decord":
        clip.decode_ms = clip.convert_ms = clip.resize_ms = -1.0
    else:  # convert_ms and resize_ms were counted by the sampler; decode_ms is the rest
        clip.decode_ms = max(0.0, clip.decode_cpu_ms - clip.convert_ms - clip.resize_ms)
    clip.resize = resize
    return clip


def _read_clip_uncounted(source: Source, num_frames: int, *, start: float | None, end: float | None,
                         decoder: str, filesystem: Any, name: str | None, max_pixels: int | None,
                         resize: str) -> Clip:
    # The readers import this module: imported here, not at the top.
    from stam_core.pyav_reader import _PyAVReader

    name = name or source_name(source)
    if decoder == "decord":
        from stam_core.decord_reader import _DecordReader

        with _translate_errors(name):
            return _DecordReader(name, source, filesystem, max_pixels).sample(num_frames, start, end)
    with _translate_errors(name), _PyAVReader(name, source, filesystem, max_pixels) as reader, \
            _translate_errors(name, reader):
        try:
            return reader.sample(num_frames, start, end, resize)
        except _VariableFrameRate:
            # Positions from the frame rate were wrong: count every packet's timestamp instead.
            log.info("%s: variable frame rate without a per-frame index; scanning packet timestamps", name)
    with _translate_errors(name), _PyAVReader(name, source, filesystem, max_pixels) as reader, \
            _translate_errors(name, reader):
        reader.scan()
        return reader.sample(num_frames, start, end, resize)


def _probe_video(source: Source, filesystem: Any = None, name: str | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ClipInfo:
    from stam_core.pyav_reader import _PyAVReader

    name = name or source_name(source)
    with _translate_errors(name), _PyAVReader(name, source, filesystem, max_pixels) as reader, \
            _translate_errors(name, reader):
        return reader.probe()


@contextlib.contextmanager
def _translate_errors(name: str, reader: Any = None):
    """FFmpeg and I/O errors met while reading become VideoErrors naming the source; running
    out of memory becomes ``VideoOutOfMemoryError`` whatever form it took.

    With an open ``reader`` (its picture size known), other decoding failures are checked
    against the memory left: under a memory limit, FFmpeg reports some failed allocations
    as other errors (swscale answers EAGAIN, a decoder may answer "invalid data"), and a
    read that fails for lack of memory must not be reported as a bad file.
    """
    import av

    try:
        yield
    except MemoryError as exc:  # Python, numpy and PIL allocations; av.error.MemoryError (ENOMEM)
        raise VideoOutOfMemoryError(name, f"out of memory while decoding ({_describe(exc)})") from exc
    except (av.error.FFmpegError, OSError) as exc:
        error = _ffmpeg_error(name, exc, "cannot decode")
        if reader is not None and not isinstance(error, VideoOutOfMemoryError) and _memory_exhausted(reader):
            raise VideoOutOfMemoryError(name, f"out of memory while decoding ({error.reason})") from exc
        raise error from exc
    except VideoFormatError as exc:  # "no decodable frame", "corrupt": also what a failed allocation looks like
        if reader is not None and _memory_exhausted(reader):
            raise VideoOutOfMemoryError(name, f"out of memory while decoding ({exc.reason})") from exc
        raise


def _memory_exhausted(reader: Any) -> bool:
    """Whether one more decoded picture's worth of memory (as RGB, as PIL holds it) would fail
    to allocate now: the sign that an error just met was an allocation failure in disguise.

    ``np.empty`` of this size maps pages without touching them: it costs no real memory, and
    it fails exactly when a memory limit (RLIMIT_DATA in the decode worker) has no room left.
    """
    nbytes = 4 * max(reader.coded_pixels(), 1 << 20)
    try:
        probe = np.empty(nbytes, np.uint8)
    except MemoryError:
        return True
    del probe
    return False


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _open_input(name: str, source: Source, filesystem: Any) -> tuple[Any, int | None, int]:
    """(what av.open / decord take, size in bytes if known, read buffer size)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return io.BytesIO(data), len(data), LOCAL_BUFFER
    if isinstance(source, Path) or (isinstance(source, str) and not source.startswith("s3://") and filesystem is None):
        path = os.fspath(source)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise VideoNotFoundError(name, "no such file") from None
        except OSError as exc:
            raise VideoReadError(name, f"cannot read: {exc.strerror or exc}") from exc
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            # Not valid UTF-8 (os.fsdecode left surrogate escapes): FFmpeg and decord take
            # UTF-8 names only, so open it here (Python encodes it back to the exact bytes)
            # and let them read a file object.
            try:
                return open(path, "rb"), size, LOCAL_BUFFER
            except OSError as exc:
                raise VideoReadError(name, f"cannot read: {exc.strerror or exc}") from exc
        return path, size, LOCAL_BUFFER
    if isinstance(source, str):
        return _open_remote(name, source, filesystem)
    if not all(hasattr(source, attr) for attr in ("read", "seek", "tell")):
        raise TypeError(f"unsupported video source {type(source).__name__}: "
                        "use a path, s3:// URI, bytes or a seekable binary file object")
    try:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
    except (OSError, ValueError) as exc:
        raise VideoReadError(name, f"file object is not seekable: {exc}") from exc
    return source, size, LOCAL_BUFFER


def _open_remote(name: str, uri: str, filesystem: Any) -> tuple[Any, int, int]:
    import pyarrow.fs as pafs

    if filesystem is None:
        filesystem = s3_filesystem()
    path = uri[len("s3://"):] if uri.startswith("s3://") else uri
    try:
        f = filesystem.open_input_file(path)
        return f, f.size(), REMOTE_BUFFER if isinstance(filesystem, pafs.S3FileSystem) else LOCAL_BUFFER
    except FileNotFoundError:
        raise VideoNotFoundError(name, "no such object") from None
    except OSError as exc:
        if "does not exist" in str(exc) or "NoSuchKey" in str(exc) or "NoSuchBucket" in str(exc):
            raise VideoNotFoundError(name, f"no such object ({exc})") from None
        raise VideoReadError(name, f"cannot open: {exc}") from exc


_S3: dict[tuple, Any] = {}
S3_MAX_ATTEMPTS = 10
S3_CONNECT_TIMEOUT_S = 10.0
S3_REQUEST_TIMEOUT_S = 60.0


def s3_filesystem():
    """A pyarrow S3FileSystem from the standard AWS environment (AWS_ENDPOINT_URL for local servers)."""
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    if key not in _S3:  # one per configuration: creating it resolves credentials
        kwargs: dict[str, Any] = {}
        if endpoint:
            parsed = urlparse(endpoint)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
        if region:
            kwargs["region"] = region
        # The AWS SDK's defaults (3 attempts, a request timeout of a few seconds) fail a read
        # during an ordinary burst of 503 SlowDown or a slow answer: be deliberate about both.
        _S3[key] = pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
                                     connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
                                     **kwargs)
    return _S3[key]


def _ffmpeg_error(name: str, exc: Exception, doing: str) -> VideoError:
    import av

    message = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
        return VideoOutOfMemoryError(name, f"{doing}: out of memory ({message})")
    if isinstance(exc, av.error.FileNotFoundError):
        return VideoNotFoundError(name, "no such file")
    if isinstance(exc, (av.error.PermissionError, av.error.EOFError)) or isinstance(exc, OSError) and not isinstance(
            exc, av.error.FFmpegError):
        return VideoReadError(name, f"{doing}: {message}")
    return VideoFormatError(name, f"{doing}: {message}")
