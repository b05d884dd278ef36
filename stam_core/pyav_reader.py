"""The PyAV reader, the default decoder: ``_PyAVReader`` opens a container and its video
stream, ``_Sampler`` decodes only the packets the sampling plan needs (the rule is in
``stam_core.video``). av is imported where it is used. Must not import torch.
"""
from __future__ import annotations

import bisect
import itertools
import math
import time
from typing import Any

import numpy as np

from stam_core.errors import (
    DEFAULT_MAX_PIXELS,
    VideoCorruptError,
    VideoFormatError,
    VideoNotAVideoError,
    VideoReadError,
    VideoTooLargeError,
)
from stam_core.frames import (
    CROP,
    _display_matrix,
    _Orient,
    _Plan,
    _VariableFrameRate,
    fast_model_input,
    to_model_input,
)
from stam_core.video import (
    INDEXED_FORMATS,
    Clip,
    ClipInfo,
    Source,
    _ffmpeg_error,
    _open_input,
)

# Codecs of still pictures (FFmpeg codec names). A stream of one of these with a single frame
# is a picture, not a video (a JPEG or PNG renamed .mp4); with several frames (MJPEG from
# cameras, animated GIF/PNG/WebP) it is decoded as a video.
STILL_IMAGE_CODECS = frozenset({
    "mjpeg", "jpegls", "ljpeg", "jpeg2000", "jpegxl", "png", "apng", "bmp", "webp", "gif", "tiff", "qoi",
    "pam", "pbm", "pgm", "pgmyuv", "ppm", "pcx", "sgi", "targa", "sunrast", "xbm", "xpm", "xwd", "dds",
    "exr", "hdr", "psd", "photocd", "pictor", "dpx", "cri", "alias_pix", "brender_pix", "ptx", "vbn", "jpegxs",
})

# Damaged streams (docs/decoding.md, "Damaged streams"): the read is an error of kind
# "corrupt" when more than this fraction of the samples were decoded from a damaged stretch
# (after a packet the decoder rejected, before the next keyframe it accepted: a picture built
# on damaged references) or taken far from their place because frames are missing there.
CORRUPT_SAMPLE_FRACTION = 0.25


class _PyAVReader:
    """One open container and its video stream; ``sample`` decodes only what the plan needs."""

    def __init__(self, name: str, source: Source, filesystem: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.name, self.source, self.filesystem, self.max_pixels = name, source, filesystem, max_pixels
        self.stats = {"frames_decoded": 0, "packets_read": 0, "seeks": 0}
        self.scanned_pts: list[int] | None = None
        self._open()

    def _open(self, check_still: bool = True) -> None:
        import av

        self.container = None
        # FFmpeg's own per-decoder limit (AVCodecContext.max_pixels, at most INT_MAX): opening
        # a container decodes a few frames to complete its header (H.264: up to 7, to learn
        # the reordering delay), and a decoder refuses pictures larger than this before
        # allocating them. So an oversized stream costs nothing here, and a stream whose
        # pictures are larger than its header claims is refused by the decoder later.
        options = {} if self.max_pixels is None else {"max_pixels": str(min(self.max_pixels, (1 << 31) - 1))}
        target, size, buffer_size = _open_input(self.name, self.source, self.filesystem)
        self._owned = target if target is not self.source and hasattr(target, "close") else None
        if size == 0:
            self.close()
            raise VideoFormatError(self.name, "empty file")
        try:
            if isinstance(target, str):
                self.container = av.open(target, metadata_errors="ignore", options=options)
            else:
                self.container = av.open(target, metadata_errors="ignore", buffer_size=buffer_size, options=options)
        except (av.error.FFmpegError, OSError) as exc:
            self.close()
            raise _ffmpeg_error(self.name, exc, "cannot open as a video (not a video, or truncated)") from exc
        try:
            reopen = self._init_stream(options, check_still)
        except BaseException:
            self.close()
            raise
        if reopen:  # packets were read to count pictures: start again at the first
            self.close()
            self._open(check_still=False)
            return
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
            self._open(check_still=False)

    def coded_pixels(self) -> int:
        """Pixels of one coded picture, from the header (0 when it does not say)."""
        ctx = self.stream.codec_context
        return max(ctx.width, 0) * max(ctx.height, 0)

    def _init_stream(self, options: dict[str, str], check_still: bool) -> bool:
        """Choose and check the video stream; True when the container must be reopened."""
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
        if self.max_pixels is not None and self.coded_pixels() > self.max_pixels:
            raise VideoTooLargeError(self.name, (
                f"{ctx.width}x{ctx.height} pictures ({self.coded_pixels():,} pixels) exceed the limit of "
                f"{self.max_pixels:,} pixels (max_pixels)"))
        if check_still and ctx.name in STILL_IMAGE_CODECS and self._refuse_single_picture():
            return True
        ctx.options = dict(options)  # max_pixels for our own decoding too (see _open)
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
        return False

    def _refuse_single_picture(self) -> bool:
        """A still-image codec with one frame is a picture: ``VideoNotAVideoError``.

        The frame count comes from the container's index (MP4, AVI) or, where there is none
        (an image file's own demuxer, Matroska), from reading up to two packets; True then
        means "packets were read: reopen the container".
        """
        import av

        count = self.stream.frames
        read = False
        if count <= 0:
            count, read = 0, True
            try:
                for packet in self.container.demux(self.stream):
                    count += packet.size > 0
                    if count > 1:
                        break
            except (av.error.FFmpegError, OSError):
                if count == 0:  # unreadable from the start: the decode proper says why
                    return read
                # damage after the first picture: counted as what could be read
        if count > 1:
            return read
        raise VideoNotAVideoError(self.name, (
            f"a single {self.stream.codec_context.name} picture (container {self.container.format.name}), "
            "not a video"))

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

    def sample(self, num_frames: int, start: float | None, end: float | None, resize: str = "exact") -> Clip:
        plan = _Plan.make(self.name, num_frames, self._duration_s(), start, end)
        return _Sampler(self, plan, resize).run()

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

    Which frame (see docs/decoding.md, "The sampling rule"): when frames are dense enough
    that every middle half holds several (``may_skip``), the decoder skips every
    non-reference frame (``skip_frame=NONREF``): nothing depends on them, so the reference
    frames it still produces are bit-exact, and each sample is the reference frame nearest
    its centre (a keyframe the sampler seeked to is taken at once). A middle half in which
    no reference frame came out although packets were skipped there is decoded again from
    the keyframe before it, this time without skipping inside that middle half, and the
    frame nearest the centre is taken (``redo``).

    Positions: with a per-frame index, the first packet after a seek has a known position
    (its decode-order index; everything before it in decode order displays before it too);
    a frame's position is that plus the number of packets read since then that display
    before it. Without one, the first packet's position comes from the frame rate and each
    frame is checked against the frame rate: a mismatch means a variable frame rate, and the
    caller rescans every packet's timestamp (``_VariableFrameRate``).
    """

    def __init__(self, reader: _PyAVReader, plan: _Plan, resize: str = "exact"):
        from av.video.reformatter import VideoReformatter

        self.r = reader
        self.resize = resize
        self.convert_s = 0.0  # CPU seconds (this thread) spent converting samples to RGB ...
        self.resize_s = 0.0  # ... and turning, resizing and cropping them
        tb = float(reader.tb)
        self.tb = tb
        n = len(plan.centres)
        self.centre = [c / tb + reader.t0 for c in plan.centres]  # in stream ticks
        self.half = plan.half / tb
        self.frames = np.zeros((n, CROP, CROP, 3), np.uint8)
        self.indices = [0] * n
        self.times = [0.0] * n
        self.next = 0  # first unfinished target
        self.best = None  # (frame, position, damaged) nearest the current target's centre inside its middle half
        self.last = None  # (frame, position, damaged) the latest decoded frame: on screen until the next one
        self.orient: _Orient | None = None
        self.reformatter = VideoReformatter()
        self.frame_ticks = 1 / (reader.fps * tb) if reader.fps else None  # nominal frame duration
        # Skip decoding non-reference frames (see the class docstring) when frames are dense
        # enough that each middle half holds several.
        self.may_skip = reader.fps > 0 and 1 / reader.fps <= plan.half / 2
        self.skipped_in: set[int] = set()  # targets whose middle half had packets read while skipping
        self.whole: int | None = None  # the target whose middle half is decoded without skipping
        self.redo = False  # the current target's middle half must be decoded again, whole
        self.run_first: int | None = None  # timestamp of the first packet since the last seek
        self.run_base: int | None = None  # its decode-order position, with a per-frame index
        self.run_pts: list[int] = []  # sorted timestamps of packets read since the last seek
        self.last_read = None  # how far reading got since the last seek, in index units
        self.take_key = False  # the next frame is a keyframe we seeked to for the current target
        self.plan_duration = reader._duration_s()
        # Damage: FFmpeg conceals it and rarely flags the frames (is_corrupt), so it is counted
        # here. rejected: timestamps of packets the decoder refused; damaged: a packet was
        # refused since the last keyframe it accepted, so pictures now rest on bad references.
        self.rejected: list[int | None] = []
        self.damaged = False
        self.damaged_samples = 0  # samples decoded from a damaged stretch
        # Samples from outside their middle half although frames are dense enough that every
        # middle half should hold several (see may_skip): frames are missing there, which is
        # how damage the demuxer skips over (lost packets, a broken Matroska cluster) shows.
        self.missing_samples = 0

    def run(self) -> Clip:
        ctx = self.r.stream.codec_context
        stats = self.r.stats
        demux, planned_for, skipping = None, -1, False
        errors: list[str] = []
        while self.next < len(self.centre):
            seek = False
            if self.redo:  # no reference frame in the target's middle half: decode it again, whole
                self.redo, self.whole, self.best, seek = False, self.next, None, True
            elif planned_for != self.next:  # a new target: seek to it, or decode on towards it?
                planned_for = self.next
                seek = demux is None or self._should_seek()
            if seek:
                demux = self._seek_for_target()
                ctx = self.r.stream.codec_context  # a new one if rewinding reopened the container
                ctx.skip_frame, skipping = "DEFAULT", False
            packet = next(demux, None)
            if packet is None or packet.size == 0:
                self._decode(ctx, None, errors)  # end of stream: drain the decoder
                if self.next < len(self.centre) and not self.redo:
                    self._finish_at_eof(errors)
                continue  # finished, or decoding again (redo)
            stats["packets_read"] += 1
            if packet.pts is not None:
                self._note_packet(packet)
            skip = False
            if self.may_skip and packet.pts is not None:
                target = self._target_of(packet.pts)
                skip = target is None or target != self.whole
                if skip and target is not None:
                    self.skipped_in.add(target)
            if skip != skipping:  # set only on change: the setter parses its string each time
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            self._decode(ctx, packet, errors)
        return self._clip()

    def _decode(self, ctx, packet, errors: list[str]) -> None:
        import av

        try:
            frames = ctx.decode(packet)
        except av.error.InvalidDataError as exc:
            errors.append(str(exc))  # a damaged packet: later ones may still decode
            pts = packet.pts if packet is not None else None
            if pts is None or pts not in self.rejected:  # a stretch decoded again (redo) counts once
                self.rejected.append(pts)
            self.damaged = True
            return
        if packet is not None and packet.is_keyframe:
            self.damaged = False  # a keyframe the decoder accepted: pictures are whole again
        for frame in frames:
            self.r.stats["frames_decoded"] += 1
            self._consider(frame)
            if self.redo:  # the rest is decoded again after the seek back
                return

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
            self.damaged = False  # decoding starts again at a keyframe
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

    def _target_of(self, pts: int) -> int | None:
        """The unfinished target whose middle half holds ``pts``, if any (they do not overlap)."""
        i = bisect.bisect_left(self.centre, pts - self.half, lo=self.next)
        return i if i < len(self.centre) and abs(pts - self.centre[i]) <= self.half else None

    def _needs_redo(self) -> bool:
        """The current target's middle half gave no frame, but packets there were skipped
        (non-reference frames): decode it again without skipping there."""
        return self.best is None and self.next in self.skipped_in and self.whole != self.next

    def _consider(self, frame) -> None:
        if frame.pts is None:
            raise VideoFormatError(self.r.name, "decoded frames carry no timestamps")
        if self.orient is None:
            self.orient = _Orient(_display_matrix(frame), self.r.name)
        pts = frame.pts
        entry = (frame, self._frame_position(pts), self.damaged or frame.is_corrupt)
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
            if self._needs_redo():
                self.redo = True
                return
            # Past the middle half without a frame in it: take the one on screen at the centre.
            self._finish(self.best or self.last or entry)
        self.last = entry
        self.take_key = False  # only the first frame after a seek saves work

    def _finish(self, entry) -> None:
        frame, position, damaged = entry
        self.damaged_samples += damaged
        self.missing_samples += not damaged and self.may_skip and abs(frame.pts - self.centre[self.next]) > self.half
        i = self.next
        began = time.thread_time()
        if self.resize == "fast":
            self.frames[i] = fast_model_input(frame, self.orient, self.reformatter)
            self.resize_s += time.thread_time() - began
        else:
            # The official path's conversion (frame.to_rgb()), with one scaler context kept for all frames.
            rgb = self.reformatter.reformat(frame, format="rgb24").to_ndarray()
            converted = time.thread_time()
            self.convert_s += converted - began
            self.frames[i] = to_model_input(self.orient(rgb))
            self.resize_s += time.thread_time() - converted
        self.indices[i] = position
        self.times[i] = float((frame.pts - self.r.t0) * self.tb)
        self.next += 1
        self.best = None

    def _finish_at_eof(self, errors: list[str]) -> None:
        """Targets left when the stream ended: the last frame may still be on screen."""
        if self._needs_redo():
            self.redo = True
            return
        if self.last is None:
            why = f" ({len(errors)} damaged packets; first: {errors[0]})" if errors else ""
            raise VideoFormatError(self.r.name, f"no decodable video frame{why}")
        while self.next < len(self.centre):
            if self.best is not None:
                self._finish(self.best)
                continue
            if self._needs_redo():
                self.redo = True
                return
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
        warnings = self._warnings()
        n = len(self.indices)
        if self.damaged_samples + self.missing_samples > CORRUPT_SAMPLE_FRACTION * n:
            raise VideoCorruptError(self.r.name, f"damaged stream: {'; '.join(warnings)} (the limit is "
                                                 f"{CORRUPT_SAMPLE_FRACTION:.0%} of the samples)")
        return Clip(self.frames, list(self.indices), list(self.times), info, warnings, resize=self.resize,
                    convert_ms=1000 * self.convert_s, resize_ms=1000 * self.resize_s)

    def _warnings(self) -> list[str]:
        out = []
        if self.rejected:
            seconds = [float((p - self.r.t0) * self.tb) for p in self.rejected if p is not None]
            first, last = (f"{min(seconds):.1f}", f"{max(seconds):.1f}") if seconds else (None, None)
            where = "" if first is None else f" at {first} s" if first == last else f" between {first} s and {last} s"
            n = len(self.rejected)
            read = self.r.stats["packets_read"]
            out.append(f"{n} undecodable packet{'s' * (n != 1)}{where} (of {read} packets read)")
        if self.damaged_samples:
            out.append(f"{self.damaged_samples} of {len(self.indices)} samples decoded from a damaged stretch")
        if self.missing_samples:
            out.append(f"{self.missing_samples} of {len(self.indices)} samples from outside their segment's middle "
                       "half: frames are missing there")
        return out
