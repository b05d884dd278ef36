"""Decode videos and sample the frames STAM sees: ``read_clip`` and ``probe_video``.

Sampling rule: the video (or the ``start``/``end`` window) is divided into ``num_frames``
equal segments by presentation time; sample i comes from the middle half of segment i
(``|t_i - centre_i| <= duration / (4 * num_frames)``). When the container's index shows a
keyframe inside that half which decoding has not passed yet, the decoder seeks to it and
takes it (one frame decoded); otherwise it takes the frame nearest the centre. A segment
whose middle half holds no frame (very short or variable-frame-rate videos) takes the frame
on screen at its centre. Frames are converted to RGB in display orientation and transformed
as in the official STAM evaluation: resize the shorter side to 256 (PIL bilinear), centre
crop 224x224.

Decoding runs in a separate worker process with a hard time limit unless ``timeout=None``
(see ``stam_core.decode_worker``). Why PyAV is the default decoder and decord is only used
on request, with the measurements behind it: docs/decoding.md.

This module must not import torch: the decode worker imports it and should start fast.
"""
from __future__ import annotations

import bisect
import contextlib
import functools
import io
import itertools
import logging
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np

from stam_core.errors import (
    VideoError,
    VideoFormatError,
    VideoNotFoundError,
    VideoReadError,
)

log = logging.getLogger(__name__)

Source = Union[str, Path, bytes, bytearray, memoryview, BinaryIO]

SHORT_SIDE = 256  # official transform: Resize(256) ...
CROP = 224  # ... then CenterCrop(224)
DECODERS = ("auto", "pyav", "decord")
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


# ---- public entry points -----------------------------------------------------------------

def read_clip(source: Source, num_frames: int = 16, *, start: float | None = None, end: float | None = None,
              timeout: float | None = 60.0, decoder: str = "auto", filesystem: Any = None) -> Clip:
    """Sample ``num_frames`` frames of a video as the model's input.

    source: a local path, ``s3://bucket/key`` (pyarrow S3, configured by the standard AWS
    environment including ``AWS_ENDPOINT_URL``; or pass a pyarrow ``filesystem``), bytes,
    or a seekable binary file object (read at absolute offsets; with a timeout the worker
    reads it through the calling process, only the byte ranges it needs).
    start/end: seconds from the first frame; sample only that window.
    timeout: hard limit in seconds, enforced by killing the decode worker process;
    None decodes in this process with no limit.
    decoder: "auto" (PyAV), "pyav" or "decord".

    Raises a ``VideoError`` subclass naming the source and the reason for any input that
    cannot be decoded; ``VideoTimeoutError`` when the limit is exceeded.
    """
    _check_args(num_frames, start, end, timeout, decoder)
    if timeout is None:
        return _read_clip(source, num_frames, start=start, end=end, decoder=decoder, filesystem=filesystem)
    from stam_core import decode_worker

    return decode_worker.call("read_clip", source, timeout, filesystem=filesystem, num_frames=num_frames,
                              start=start, end=end, decoder=decoder)


def probe_video(source: Source, *, timeout: float | None = 60.0, filesystem: Any = None) -> ClipInfo:
    """Metadata of a video (duration, frame rate, size, codec, rotation) without sampling it.

    Reads the container header (PyAV) and decodes the first frame only (rotation is carried
    in frame side data). Same sources, limits and errors as ``read_clip``.
    """
    _check_args(1, None, None, timeout, "pyav")
    if timeout is None:
        return _probe_video(source, filesystem=filesystem)
    from stam_core import decode_worker

    return decode_worker.call("probe_video", source, timeout, filesystem=filesystem)


def _check_args(num_frames, start, end, timeout, decoder) -> None:
    if decoder == "auto":
        _log_auto_choice()
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end is not None and end <= (start or 0):
        raise ValueError(f"end ({end}) must be after start ({start or 0})")


@functools.lru_cache(maxsize=None)
def _log_auto_choice() -> None:
    # A choice made for the user is said once per process (and recorded in ClipInfo.decoder).
    log.info("decoder='auto' decodes with PyAV; decord only when asked for (docs/decoding.md)")


def source_name(source: Source) -> str:
    """How errors name a source."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    return f"<file object {name}>" if isinstance(name, str) else f"<file object {type(source).__name__}>"


# ---- in-process implementation (also what the worker runs) -------------------------------

def _read_clip(source: Source, num_frames: int, *, start: float | None, end: float | None, decoder: str,
               filesystem: Any = None, name: str | None = None) -> Clip:
    name = name or source_name(source)
    if decoder == "decord":
        with _translate_errors(name):
            return _DecordReader(name, source, filesystem).sample(num_frames, start, end)
    with _PyAVReader(name, source, filesystem) as reader, _translate_errors(name):
        try:
            return reader.sample(num_frames, start, end)
        except _VariableFrameRate:
            # Positions from the frame rate were wrong: count every packet's timestamp instead.
            log.info("%s: variable frame rate without a per-frame index; scanning packet timestamps", name)
    with _PyAVReader(name, source, filesystem) as reader, _translate_errors(name):
        reader.scan()
        return reader.sample(num_frames, start, end)


def _probe_video(source: Source, filesystem: Any = None, name: str | None = None) -> ClipInfo:
    name = name or source_name(source)
    with _PyAVReader(name, source, filesystem) as reader, _translate_errors(name):
        return reader.probe()


@contextlib.contextmanager
def _translate_errors(name: str):
    """FFmpeg and I/O errors met while reading become VideoErrors naming the source."""
    import av

    try:
        yield
    except (av.error.FFmpegError, OSError) as exc:
        raise _ffmpeg_error(name, exc, "cannot decode") from exc


class _VariableFrameRate(Exception):
    """Internal: frame positions cannot be derived from the frame rate; rescan."""


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


def s3_filesystem():
    """A pyarrow S3FileSystem from the standard AWS environment (AWS_ENDPOINT_URL for local servers)."""
    import pyarrow.fs as pafs
    from urllib.parse import urlparse

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
        _S3[key] = pafs.S3FileSystem(**kwargs)
    return _S3[key]


def _ffmpeg_error(name: str, exc: Exception, doing: str) -> VideoError:
    import av

    message = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, av.error.FileNotFoundError):
        return VideoNotFoundError(name, "no such file")
    if isinstance(exc, (av.error.PermissionError, av.error.EOFError)) or isinstance(exc, OSError) and not isinstance(
            exc, av.error.FFmpegError):
        return VideoReadError(name, f"{doing}: {message}")
    return VideoFormatError(name, f"{doing}: {message}")


# ---- orientation and the model transform -------------------------------------------------

def _orientation(matrix: tuple[int, ...] | None) -> tuple[int, str | None, bool, bool]:
    """(clockwise degrees, transpose op, hflip, vflip) as FFmpeg's autorotate applies a display matrix."""
    if matrix is None:
        return 0, None, False, False
    a, b, c, d = (v / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale0, scale1 = math.hypot(a, c), math.hypot(b, d)
    if scale0 == 0 or scale1 == 0:
        return 0, None, False, False
    theta = -round(-math.degrees(math.atan2(b / scale1, a / scale0)))  # fftools get_rotation()
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return 90, ("cclock_flip" if matrix[3] > 0 else "clock"), False, False
    if abs(theta - 180) < 1:
        return 180, None, matrix[0] < 0, matrix[4] < 0
    if abs(theta - 270) < 1:
        return 270, ("clock_flip" if matrix[3] < 0 else "cclock"), False, False
    if abs(theta) > 1:
        raise _UnsupportedRotation(theta)
    return 0, None, False, matrix[4] < 0


class _UnsupportedRotation(Exception):
    """Internal: a display matrix that turns by other than a multiple of 90 degrees."""


def _display_matrix(frame) -> tuple[int, ...] | None:
    from av.sidedata.sidedata import Type

    for side_data in frame.side_data:
        if side_data.type == Type.DISPLAYMATRIX:
            return struct.unpack("=9i", bytes(side_data))
    return None


class _Orient:
    """Turns decoded pictures into display orientation (numpy views, no copies)."""

    def __init__(self, matrix: tuple[int, ...] | None, name: str = ""):
        try:
            self.rotation, self.transpose, self.hflip, self.vflip = _orientation(matrix)
        except _UnsupportedRotation as exc:
            raise VideoFormatError(name, f"display matrix turns the picture by {exc.args[0]:g} degrees; "
                                         "only multiples of 90 are supported") from None
        # A 180-degree turn is an hflip plus a vflip; only one of them means a mirror.
        self.flipped = self.transpose in ("cclock_flip", "clock_flip") or (self.rotation != 180 and self.vflip) or (
            self.rotation == 180 and self.hflip != self.vflip)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.transpose == "clock":
            rgb = np.rot90(rgb, k=-1)
        elif self.transpose == "cclock":
            rgb = np.rot90(rgb, k=1)
        elif self.transpose == "cclock_flip":
            rgb = rgb.transpose(1, 0, 2)
        elif self.transpose == "clock_flip":
            rgb = rgb[::-1, ::-1].transpose(1, 0, 2)
        if self.hflip:
            rgb = rgb[:, ::-1]
        if self.vflip:
            rgb = rgb[::-1]
        return rgb

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        return (height, width) if self.transpose else (width, height)


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """Resize the shorter side to 256 (PIL bilinear, aspect kept) and centre-crop 224x224.

    Same arithmetic as torchvision's Resize(256) + CenterCrop(224) on a PIL image, but PIL
    only computes the cropped region (``box``), which gives the same pixels for less work.
    """
    from PIL import Image

    height, width = rgb.shape[:2]
    if width <= height:
        new_w, new_h = SHORT_SIDE, int(SHORT_SIDE * height / width)
    else:
        new_w, new_h = int(SHORT_SIDE * width / height), SHORT_SIDE
    left, top = int(round((new_w - CROP) / 2.0)), int(round((new_h - CROP) / 2.0))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box))


# ---- sampling plan -----------------------------------------------------------------------

@dataclass
class _Plan:
    """Segment centres and middle halves in seconds from the first frame."""

    centres: list[float]
    half: float  # duration / (4 * num_frames)

    @classmethod
    def make(cls, name: str, num_frames: int, duration: float, start: float | None, end: float | None) -> "_Plan":
        lo = 0.0 if start is None else float(start)
        hi = duration if end is None else min(float(end), duration)
        if lo >= duration or hi <= lo:
            raise VideoError(name, f"window [{lo:g}, {hi:g}] s lies outside the video (duration {duration:.3f} s)")
        seg = (hi - lo) / num_frames
        return cls([lo + (i + 0.5) * seg for i in range(num_frames)], seg / 4)

    def choose(self, name: str, times: np.ndarray, shown_until: float) -> list[int]:
        """Positions of the samples, given every frame's start time (the rule without the
        keyframe shortcut, for decoders that know all timestamps)."""
        out = []
        for c in self.centres:
            i = int(np.searchsorted(times, c))  # first frame at or after the centre
            near = [j for j in (i - 1, i) if 0 <= j < len(times) and abs(times[j] - c) <= self.half]
            if near:
                out.append(min(near, key=lambda j: abs(times[j] - c)))
            elif c <= shown_until:
                out.append(max(i - 1, 0))  # none in the middle half: the frame on screen
            else:
                raise VideoReadError(name, f"truncated or damaged: no frame at {c:.3f} s; the last decodable "
                                           f"frame is at {times[-1]:.3f} s")
        return out


# ---- PyAV --------------------------------------------------------------------------------

class _PyAVReader:
    """One open container and its video stream; ``sample`` decodes only what the plan needs."""

    def __init__(self, name: str, source: Source, filesystem: Any):
        self.name, self.source, self.filesystem = name, source, filesystem
        self.stats = {"frames_decoded": 0, "packets_read": 0, "seeks": 0}
        self.scanned_pts: list[int] | None = None
        self._open()

    def _open(self) -> None:
        import av

        self.container = None
        target, size, buffer_size = _open_input(self.name, self.source, self.filesystem)
        self._owned = target if target is not self.source and hasattr(target, "close") else None
        if size == 0:
            self.close()
            raise VideoFormatError(self.name, "empty file")
        try:
            if isinstance(target, str):
                self.container = av.open(target, metadata_errors="ignore")
            else:
                self.container = av.open(target, metadata_errors="ignore", buffer_size=buffer_size)
        except (av.error.FFmpegError, OSError) as exc:
            self.close()
            raise _ffmpeg_error(self.name, exc, "cannot open as a video (not a video, or truncated)") from exc
        try:
            self._init_stream()
        except BaseException:
            self.close()
            raise
        self.fresh = True  # positioned at the first frame, nothing read yet

    def packets(self):
        """The packets from the current position on (after ``rewind``: from the first)."""
        self.fresh = False
        peeked, self._peeked = self._peeked, None
        demux = self._demux if peeked is not None else self.container.demux(self.stream)
        return itertools.chain([peeked] if peeked is not None else [], demux)

    def rewind(self) -> None:
        """Back to the first frame: a seek with an index; without one, seeking is not exact
        (MPEG-TS lands on a decode time, not a keyframe), so reopen."""
        if self.fresh:
            return
        if self.entries is not None:
            self._seek(self.t0)
        else:
            self.close()
            self._open()

    def _init_stream(self) -> None:
        import av

        streams = [s for s in self.container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic]  # cover art is not video
        if not streams:
            kinds = sorted({s.type for s in self.container.streams}) or ["none"]
            raise VideoFormatError(self.name, f"no video stream (streams: {', '.join(kinds)})")
        self.stream = stream = streams[0]
        if stream.codec_context is None:
            raise VideoFormatError(self.name, "unsupported codec: this FFmpeg has no decoder for the video stream")
        ctx = stream.codec_context
        # One decoding thread: parallelism comes from decoding many videos at once, and the
        # per-packet skip_frame switch below needs the decoder to act on packets in order.
        ctx.thread_type = "NONE"
        ctx.thread_count = 1
        self.tb = stream.time_base
        self.t0 = stream.start_time if stream.start_time is not None else 0
        self.fps = float(stream.average_rate or stream.guessed_rate or 0)
        entries = stream.index_entries
        # Only MP4/MOV and Matroska/WebM carry an index worth steering by. Other formats
        # (MPEG-TS, raw streams) grow index entries while they are read and searched; they are
        # decoded in one forward pass instead.
        indexed = self.container.format.name.split(",")[0] in INDEXED_FORMATS
        if indexed and len(entries) < 2:
            self._seek(self.t0)  # Matroska reads its cues on the first seek
            entries = stream.index_entries
        self.entries = entries if indexed and len(entries) >= 2 else None
        self._peeked = None
        if self.entries is None:
            # Without an index the stream's start time can disagree with its first frame (AVI
            # gives B-frame streams made-up times): trust the first packet, a keyframe.
            self._demux = self.container.demux(stream)
            self._peeked = next((p for p in self._demux if p.pts is not None or p.size == 0), None)
            if self._peeked is not None and self._peeked.pts is not None:
                self.t0 = self._peeked.pts
        # An index with an entry per frame (MP4/MOV, AVI) gives exact positions; keyframe-only
        # indexes (Matroska cues) give seek points, positions then come from the frame rate.
        self.full_index = self.entries is not None and stream.frames > 0 and len(entries) == stream.frames
        self.leading_discards = 0
        self.index_shift = 0
        if self.entries is not None:
            while self.leading_discards < len(entries) and entries[self.leading_discards].is_discard:
                self.leading_discards += 1
            # MP4 index timestamps are decode times; keyframes display this much later.
            first = entries[self.leading_discards] if self.leading_discards < len(entries) else entries[0]
            self.index_shift = self.t0 - first.timestamp if first.is_keyframe else 0

    # -- metadata

    def _duration_s(self) -> float:
        stream, container = self.stream, self.container
        if stream.duration:
            return float(stream.duration * self.tb)
        if container.duration:
            end = (container.duration + (container.start_time or 0)) / 1_000_000
            return end - float(self.t0 * self.tb)
        if self.scanned_pts is None:
            self.scan()
        return self._scanned_duration

    def frame_count(self) -> tuple[int, bool]:
        if self.scanned_pts is not None:
            return len(self.scanned_pts), True
        if self.stream.frames > 0:
            return self.stream.frames - self.leading_discards, True
        return max(1, round(self._duration_s() * self.fps)), False

    def info(self, orient: _Orient, decoder: str = "pyav") -> ClipInfo:
        ctx = self.stream.codec_context
        width, height = orient.display_size(ctx.width, ctx.height)
        count, exact = self.frame_count()
        duration = self._duration_s()
        fps = self.fps or (count / duration if duration > 0 else 0.0)
        return ClipInfo(duration_s=duration, fps=fps, frame_count=count, width=width, height=height,
                        codec=ctx.name, rotation=orient.rotation, decoder=decoder, flipped=orient.flipped,
                        container=self.container.format.name, pix_fmt=ctx.pix_fmt or "", frame_count_exact=exact,
                        **self.stats)

    def probe(self) -> ClipInfo:
        return self.info(self._first_orientation())

    def _first_orientation(self) -> _Orient:
        import av

        self.rewind()
        ctx = self.stream.codec_context
        try:
            for packet in itertools.chain(self.packets(), [None]):
                for frame in ctx.decode(packet):
                    self.stats["frames_decoded"] += 1
                    return _Orient(_display_matrix(frame), self.name)
        except av.error.FFmpegError as exc:
            raise _ffmpeg_error(self.name, exc, "cannot decode") from exc
        raise VideoFormatError(self.name, "no decodable video frame")

    def scan(self) -> None:
        """Read every packet's timestamp (no decoding): exact positions for variable frame rates."""
        import av

        pts, end = [], None
        self.rewind()
        try:
            for packet in self.packets():
                if packet.pts is None or packet.size == 0:
                    continue
                self.stats["packets_read"] += 1
                pts.append(packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        except av.error.FFmpegError as exc:
            raise _ffmpeg_error(self.name, exc, "cannot read packets") from exc
        if not pts:
            raise VideoFormatError(self.name, "no video packets")
        pts.sort()
        self.scanned_pts = pts
        self._scanned_duration = float((end - self.t0) * self.tb)

    def _seek(self, pts: int) -> None:
        import av

        try:
            self.container.seek(pts, backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError as exc:
            raise _ffmpeg_error(self.name, exc, "cannot seek") from exc
        self.stream.codec_context.flush_buffers()
        self._peeked = None
        self.stats["seeks"] += 1

    # -- keyframe index

    def _keyframe(self, ts: float, backward: bool):
        """The index entry of the keyframe at/before (or at/after) ``ts``, in index units."""
        ts = math.floor(ts) if backward else math.ceil(ts)
        i = self.entries.search_timestamp(ts, backward=backward, any_frame=False)
        return self.entries[i] if 0 <= i < len(self.entries) else None

    def _landing(self, key) -> int:
        """A seek timestamp that lands on keyframe ``key``: just before the next keyframe.

        FFmpeg's MP4 seek compares presentation times, the index holds decode times; a time
        between this keyframe and the next lands here under either reading.
        """
        following = self._keyframe(key.timestamp + 1, backward=False)
        return following.timestamp - 1 if following is not None else key.timestamp + (1 << 40)

    def _position(self, dts: int | None) -> int | None:
        """Decode-order position of the packet with this decode time, from a per-frame index."""
        if dts is None:
            return None
        i = self.entries.search_timestamp(dts, backward=True, any_frame=True)
        if i < 0 or self.entries[i].timestamp != dts:
            return None
        return i - self.leading_discards

    # -- sampling

    def sample(self, num_frames: int, start: float | None, end: float | None) -> Clip:
        plan = _Plan.make(self.name, num_frames, self._duration_s(), start, end)
        return _Sampler(self, plan).run()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> "_PyAVReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Sampler:
    """One pass over the packets the plan needs, seeking forward past what it does not.

    Positions: with a per-frame index, the first packet after a seek has a known position
    (its decode-order index; everything before it in decode order displays before it too);
    a frame's position is that plus the number of packets read since then that display
    before it. Without one, the first packet's position comes from the frame rate and each
    frame is checked against the frame rate: a mismatch means a variable frame rate, and the
    caller rescans every packet's timestamp (``_VariableFrameRate``).
    """

    def __init__(self, reader: _PyAVReader, plan: _Plan):
        from av.video.reformatter import VideoReformatter

        self.r = reader
        tb = float(reader.tb)
        self.tb = tb
        n = len(plan.centres)
        self.centre = [c / tb + reader.t0 for c in plan.centres]  # in stream ticks
        self.half = plan.half / tb
        self.frames = np.zeros((n, CROP, CROP, 3), np.uint8)
        self.indices = [0] * n
        self.times = [0.0] * n
        self.next = 0  # first unfinished target
        self.best = None  # (frame, position) nearest the current target's centre inside its middle half
        self.last = None  # (frame, position) the latest decoded frame: on screen until the next one
        self.orient: _Orient | None = None
        self.reformatter = VideoReformatter()
        self.frame_ticks = 1 / (reader.fps * tb) if reader.fps else None  # nominal frame duration
        # Skip decoding non-reference frames that cannot be samples (see _wanted), when frames
        # are dense enough that each middle half holds several.
        self.may_skip = reader.fps > 0 and 1 / reader.fps <= plan.half / 2
        self.near = min(self.half, self.frame_ticks or self.half)
        self.run_first: int | None = None  # timestamp of the first packet since the last seek
        self.run_base: int | None = None  # its decode-order position, with a per-frame index
        self.run_pts: list[int] = []  # sorted timestamps of packets read since the last seek
        self.last_read = None  # how far reading got since the last seek, in index units
        self.take_key = False  # the next frame is a keyframe we seeked to for the current target
        self.plan_duration = reader._duration_s()

    def run(self) -> Clip:
        ctx = self.r.stream.codec_context
        stats = self.r.stats
        demux, planned_for, skipping = None, -1, False
        errors: list[str] = []
        while self.next < len(self.centre):
            if planned_for != self.next:  # a new target: seek to it, or decode on towards it?
                planned_for = self.next
                if demux is None or self._should_seek():
                    demux = self._seek_for_target()
            packet = next(demux, None)
            if packet is None or packet.size == 0:
                self._decode(ctx, None, errors)  # end of stream: drain the decoder
                break
            stats["packets_read"] += 1
            if packet.pts is not None:
                self._note_packet(packet)
            skip = self.may_skip and packet.pts is not None and not self._wanted(packet.pts)
            if skip != skipping:  # set only on change: the setter parses its string each time
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            self._decode(ctx, packet, errors)
        if self.next < len(self.centre):
            self._finish_at_eof(errors)
        return self._clip()

    def _decode(self, ctx, packet, errors: list[str]) -> None:
        import av

        try:
            frames = ctx.decode(packet)
        except av.error.InvalidDataError as exc:
            errors.append(str(exc))  # a damaged packet: later ones may still decode
            return
        for frame in frames:
            self.r.stats["frames_decoded"] += 1
            self._consider(frame)

    # -- seeking (index entries are in the index's own units: see _PyAVReader.index_shift)

    def _start_key(self, target: int):
        """Where to start decoding for a target: the first keyframe the index places inside its
        middle half (decoding it is all the work), else the last keyframe before its centre."""
        r = self.r
        c, h = self.centre[target] - r.index_shift, self.half
        key = r._keyframe(c - h, backward=False)
        if key is not None and key.timestamp <= c + h:
            return key
        return r._keyframe(c, backward=True)

    def _should_seek(self) -> bool:
        """Whether the next target is better reached by seeking than by decoding on."""
        if self.r.entries is None or self.last_read is None:
            return False  # no index: one forward pass
        key = self._start_key(self.next)
        # Only forward, to a keyframe not read yet: otherwise decoding on is cheaper.
        return key is not None and key.timestamp > self.last_read

    def _seek_for_target(self):
        r = self.r
        key = self._start_key(self.next) if r.entries is not None else None
        limit = self.centre[self.next] + self.half
        landed = None
        while True:
            if key is not None:
                r._seek(r._landing(key))
            else:
                r.rewind()
            self.run_first, self.run_base, self.run_pts, self.last_read, self.last = None, None, [], None, None
            self.take_key = key is not None
            demux = r.packets()
            first = next((p for p in demux if p.pts is not None or p.size == 0), None)
            if first is None or first.size == 0 or r.entries is None:
                break
            mark = first.dts if r.full_index and first.dts is not None else first.pts
            # Learn the keyframes' display delay (MP4): the first keyframe's is often shorter.
            r.index_shift = max(r.index_shift, first.pts - mark)
            if first.pts <= limit or (landed is not None and mark >= landed):
                break  # early enough, or stepping back got no earlier
            landed = mark
            # The keyframe's display time was estimated from its decode time, and it displays
            # after the middle half: start from the keyframe before it.
            key = r._keyframe(mark - 1, backward=True)
            if key is None or key.timestamp >= mark:
                break
        return itertools.chain([first] if first is not None else [], demux)

    # -- positions

    def _note_packet(self, packet) -> None:
        r = self.r
        if self.run_first is None:
            self.run_first = packet.pts
            self.run_base = r._position(packet.dts) if r.full_index else None
        bisect.insort(self.run_pts, packet.pts)
        # How far reading got, in the index's units: per-frame indexes (MP4) list decode
        # times, keyframe indexes (Matroska cues) presentation times.
        mark = packet.dts if r.full_index else packet.pts
        if mark is not None and (self.last_read is None or mark > self.last_read):
            self.last_read = mark

    def _rate_position(self, pts: int) -> int:
        return round((pts - self.r.t0) * self.tb * self.r.fps)

    def _frame_position(self, pts: int) -> int:
        r = self.r
        if r.scanned_pts is not None:
            return bisect.bisect_left(r.scanned_pts, pts)
        before = bisect.bisect_left(self.run_pts, pts)  # packets since the seek that display earlier
        if self.run_base is not None:  # the first packet's decode-order position, from the index
            return self.run_base + before
        # From the frame rate: the first packet (a keyframe) is at its time x fps; packets read
        # after it that display before it (open-GOP leading pictures) are already counted there.
        position = self._rate_position(self.run_first) + before - bisect.bisect_left(self.run_pts, self.run_first)
        if r.fps and position != self._rate_position(pts):
            raise _VariableFrameRate()
        return position

    # -- choosing frames

    def _wanted(self, pts: int) -> bool:
        """Whether a packet may be the frame nearest an unfinished target's centre.

        Within a frame duration of the centre: at a constant frame rate the nearest frame is
        within half of one. Other non-reference frames are not decoded; with a varying rate
        the nearest decoded frame inside the middle half is taken, which the rule allows.
        """
        i = bisect.bisect_left(self.centre, pts - self.near, lo=self.next)
        return i < len(self.centre) and abs(pts - self.centre[i]) <= self.near

    def _consider(self, frame) -> None:
        if frame.pts is None:
            raise VideoFormatError(self.r.name, "decoded frames carry no timestamps")
        if self.orient is None:
            self.orient = _Orient(_display_matrix(frame), self.r.name)
        pts = frame.pts
        entry = (frame, self._frame_position(pts))
        while self.next < len(self.centre):
            c = self.centre[self.next]
            if pts < c - self.half:
                break
            if pts <= c + self.half:
                if self.take_key and frame.key_frame:
                    self._finish(entry)  # the keyframe we seeked to: one frame decoded
                    break
                if self.best is None or abs(pts - c) < abs(self.best[0].pts - c):
                    self.best = entry
                if pts >= c:  # later frames are only further from the centre
                    self._finish(self.best)
                break
            # Past the middle half without a frame in it: take the one on screen at the centre.
            self._finish(self.best or self.last or entry)
        self.last = entry
        self.take_key = False  # only the first frame after a seek saves work

    def _finish(self, entry) -> None:
        frame, position = entry
        i = self.next
        # The official path's conversion (frame.to_rgb()), with one scaler context kept for all frames.
        rgb = self.reformatter.reformat(frame, format="rgb24").to_ndarray()
        self.frames[i] = to_model_input(self.orient(rgb))
        self.indices[i] = position
        self.times[i] = float((frame.pts - self.r.t0) * self.tb)
        self.next += 1
        self.best = None

    def _finish_at_eof(self, errors: list[str]) -> None:
        """Targets left when the stream ended: the last frame may still be on screen."""
        if self.last is None:
            why = f" ({len(errors)} damaged packets; first: {errors[0]})" if errors else ""
            raise VideoFormatError(self.r.name, f"no decodable video frame{why}")
        while self.next < len(self.centre):
            if self.best is not None:
                self._finish(self.best)
                continue
            frame = self.last[0]
            # A frame stays on screen for its duration; one frame of slack for rounding.
            shown_until = frame.pts + (frame.duration or 0) + (self.frame_ticks or 0)
            c = self.centre[self.next]
            if shown_until < c:
                raise VideoReadError(self.r.name, (
                    f"truncated or damaged: no frame at {(c - self.r.t0) * self.tb:.3f} s; the last decodable "
                    f"frame is at {(frame.pts - self.r.t0) * self.tb:.3f} s of {self.plan_duration:.3f} s"))
            self._finish(self.last)

    def _clip(self) -> Clip:
        info = self.r.info(self.orient or _Orient(None))
        info.repeated = len(set(self.indices)) < len(self.indices)
        return Clip(self.frames, list(self.indices), list(self.times), info)


# ---- decord ------------------------------------------------------------------------------

class _DecordReader:
    """decord's VideoReader: scans every packet when it opens, so positions are exact.

    Used only when asked for (see docs/decoding.md). decord (FFmpeg 4 inside) turns MP4
    pictures by their rotation itself but ignores Matroska/WebM rotation; there the
    orientation PyAV reads from the container is applied.
    """

    def __init__(self, name: str, source: Source, filesystem: Any):
        self.name, self.source, self.filesystem = name, source, filesystem

    def sample(self, num_frames: int, start: float | None, end: float | None) -> Clip:
        import decord

        with _PyAVReader(self.name, self.source, self.filesystem) as probe:
            orient = probe._first_orientation()
            if orient.flipped:  # decord's FFmpeg 4 reads the angle only
                raise VideoFormatError(self.name, "decord cannot show a mirrored picture; use decoder='pyav'")
            meta = probe.info(orient, decoder="decord")
            coded = (probe.stream.codec_context.height, probe.stream.codec_context.width)
            mp4 = probe.container.format.name.startswith("mov")
        target, _, _ = _open_input(self.name, self.source, self.filesystem)
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
        plan = _Plan.make(self.name, num_frames, meta.duration_s, start, end)
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
        return Clip(frames, indices, [float(times[i]) for i in indices], meta)


def _decord_reason(exc: Exception) -> str:
    # "[12:00:00] /github/workspace/src/video/video_reader.cc:151: Check failed: ... ERROR why"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if " ERROR " in text:
        return text.rsplit(" ERROR ", 1)[1]
    return re.sub(r"^\[[^]]*\] \S+:\d+: ", "", text)
