"""Reading in this process: ``read_clip_here`` and ``probe_here`` are what ``read_clip`` and
``probe_video`` run with ``timeout=None``, and what the decode worker runs for them
otherwise. They choose the reader, retry variable frame rates, count the CPU time, and turn
FFmpeg, I/O and memory failures into ``VideoError``s naming the source. No argument checks:
the API (``stam_core.video.api``) made them. Must not import torch.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import numpy as np

from stam_core.errors import DEFAULT_MAX_PIXELS, VideoFormatError, VideoOutOfMemoryError
from stam_core.video.clip import Clip, ClipInfo, Source, source_name
from stam_core.video.decord_reader import DecordReader
from stam_core.video.frames import VariableFrameRate
from stam_core.video.pyav_reader import PyAVReader
from stam_core.video.pyav_sampler import sample
from stam_core.video.sources import ffmpeg_error

log = logging.getLogger(__name__)

# The clock of Clip.decode_cpu_ms: this thread's CPU time in the calling process (decoding
# runs in the calling thread: one decoding thread, see pyav_reader); the decode worker sets
# time.process_time, its whole process, since decoding is all it does.
CPU_CLOCK = time.thread_time


def read_clip_here(source: Source, num_frames: int, *, start: float | None, end: float | None, decoder: str,
                   filesystem: Any = None, name: str | None = None,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, resize: str = "exact") -> Clip:
    """``read_clip`` in this process, with no time or memory limit."""
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
    name = name or source_name(source)
    if decoder == "decord":
        with translate_errors(name):
            return DecordReader(name, source, filesystem, max_pixels).sample(num_frames, start, end)
    with translate_errors(name), PyAVReader(name, source, filesystem, max_pixels) as reader, \
            translate_errors(name, reader):
        try:
            return sample(reader, num_frames, start, end, resize)
        except VariableFrameRate:
            # Positions from the frame rate were wrong: count every packet's timestamp instead.
            log.info("%s: variable frame rate without a per-frame index; scanning packet timestamps", name)
    with translate_errors(name), PyAVReader(name, source, filesystem, max_pixels) as reader, \
            translate_errors(name, reader):
        reader.scan()
        return sample(reader, num_frames, start, end, resize)


def probe_here(source: Source, filesystem: Any = None, name: str | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ClipInfo:
    """``probe_video`` in this process, with no time or memory limit."""
    name = name or source_name(source)
    with translate_errors(name), PyAVReader(name, source, filesystem, max_pixels) as reader, \
            translate_errors(name, reader):
        return reader.probe()


@contextlib.contextmanager
def translate_errors(name: str, reader: Any = None):
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
        error = ffmpeg_error(name, exc, "cannot decode")
        if reader is not None and not isinstance(error, VideoOutOfMemoryError) and memory_exhausted(reader):
            raise VideoOutOfMemoryError(name, f"out of memory while decoding ({error.reason})") from exc
        raise error from exc
    except VideoFormatError as exc:  # "no decodable frame", "corrupt": also what a failed allocation looks like
        if reader is not None and memory_exhausted(reader):
            raise VideoOutOfMemoryError(name, f"out of memory while decoding ({exc.reason})") from exc
        raise


def memory_exhausted(reader: Any) -> bool:
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
