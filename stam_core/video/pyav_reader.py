"""The PyAV reader, the default decoder: ``PyAVReader`` opens a container and its video
stream and knows its index, metadata and orientation; the decoding pass that samples a clip
is ``stam_core.video.pyav_sampler``. av is imported where it is used. Must not import torch.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

from stam_core.errors import (
    DEFAULT_MAX_PIXELS,
    VideoFormatError,
    VideoNotAVideoError,
    VideoTooLargeError,
)
from stam_core.video.clip import INDEXED_FORMATS, ClipInfo, Source
from stam_core.video.frames import Orientation, display_matrix
from stam_core.video.sources import ffmpeg_error, open_input

# Codecs of still pictures (FFmpeg codec names). A stream of one of these with a single frame
# is a picture, not a video (a JPEG or PNG renamed .mp4); with several frames (MJPEG from
# cameras, animated GIF/PNG/WebP) it is decoded as a video.
STILL_IMAGE_CODECS = frozenset({
    "mjpeg", "jpegls", "ljpeg", "jpeg2000", "jpegxl", "png", "apng", "bmp", "webp", "gif", "tiff", "qoi",
    "pam", "pbm", "pgm", "pgmyuv", "ppm", "pcx", "sgi", "targa", "sunrast", "xbm", "xpm", "xwd", "dds",
    "exr", "hdr", "psd", "photocd", "pictor", "dpx", "cri", "alias_pix", "brender_pix", "ptx", "vbn", "jpegxs",
})



# A container's duration is believed unless the stream ends more than this before it
# (containers round, and an audio track may outlast the video a little).
CLAIM_SLACK_S = 1.0


class PyAVReader:
    """One open container and its video stream; ``sample`` decodes only what the plan needs."""

    def __init__(self, name: str, source: Source, filesystem: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.name, self.source, self.filesystem, self.max_pixels = name, source, filesystem, max_pixels
        self.stats = {"frames_decoded": 0, "packets_read": 0, "seeks": 0}
        self.scanned_pts: list[int] | None = None
        self._duration: float | None = None  # duration_s(), computed once
        self.claimed_duration_s: float | None = None  # the container's claim, where the stream ends well before it
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
        target, size, buffer_size = open_input(self.name, self.source, self.filesystem)
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
            raise ffmpeg_error(self.name, exc, "cannot open as a video (not a video, or truncated)") from exc
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
            self.seek(self.t0)
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
            self.seek(self.t0)  # Matroska reads its cues on the first seek
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

    def duration_s(self) -> float:
        """Seconds of video: the container's claim, unless the stream ends well before it.

        A header can claim any length (a 2-s file claiming 24 h). Where the index ends far
        before the claim, a seek to its last keyframe and a read of the packets from there
        (no decoding) find where the stream really ends; that end is the duration, and
        ``claimed_duration_s`` keeps the claim. Without an index the claim stands: those
        formats are read in one forward pass, which meets the real end anyway.
        """
        if self._duration is None:
            claim = self._claimed_duration_s()
            end = self._stream_end_s(claim)
            if end is not None and claim - end > CLAIM_SLACK_S:
                self._duration, self.claimed_duration_s = end, claim
            else:
                self._duration = claim
        return self._duration

    def _stream_end_s(self, claim: float) -> float | None:
        """Where the last packet ends (seconds from the first frame), when the index ends
        further than a GOP plus ``CLAIM_SLACK_S`` before the claim; None otherwise."""
        import av

        if self.entries is None:
            return None
        tail = [self.entries[i].timestamp for i in range(max(0, len(self.entries) - 16), len(self.entries))]
        gop = max((b - a for a, b in zip(tail, tail[1:])), default=0)
        last = float((tail[-1] + self.index_shift - self.t0) * self.tb)
        if claim <= last + float(gop * self.tb) + CLAIM_SLACK_S:
            return None  # the index reaches the claim: believe it
        self.seek(self.landing(self.keyframe(tail[-1], backward=True) or self.entries[0]))
        end = None
        try:
            for packet in self.packets():
                if packet.pts is None or packet.size == 0:
                    continue
                self.stats["packets_read"] += 1
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        except av.error.FFmpegError:
            pass  # damage at the tail: the end is the last packet read before it
        if end is None:
            return None
        return float((end - self.t0) * self.tb)

    def _claimed_duration_s(self) -> float:
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
        return max(1, round(self.duration_s() * self.fps)), False

    def info(self, orient: Orientation, decoder: str = "pyav") -> ClipInfo:
        ctx = self.stream.codec_context
        width, height = orient.display_size(ctx.width, ctx.height)
        count, exact = self.frame_count()
        duration = self.duration_s()
        fps = self.fps or (count / duration if duration > 0 else 0.0)
        return ClipInfo(duration_s=duration, fps=fps, frame_count=count, width=width, height=height,
                        codec=ctx.name, rotation=orient.rotation, decoder=decoder, flipped=orient.flipped,
                        container=self.container.format.name, pix_fmt=ctx.pix_fmt or "", frame_count_exact=exact,
                        claimed_duration_s=self.claimed_duration_s, **self.stats)

    def probe(self) -> ClipInfo:
        return self.info(self.first_orientation())

    def first_orientation(self) -> Orientation:
        import av

        self.rewind()
        ctx = self.stream.codec_context
        try:
            for packet in itertools.chain(self.packets(), [None]):
                for frame in ctx.decode(packet):
                    self.stats["frames_decoded"] += 1
                    return Orientation(display_matrix(frame), self.name)
        except av.error.FFmpegError as exc:
            raise ffmpeg_error(self.name, exc, "cannot decode") from exc
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
            raise ffmpeg_error(self.name, exc, "cannot read packets") from exc
        if not pts:
            raise VideoFormatError(self.name, "no video packets")
        pts.sort()
        self.scanned_pts = pts
        self._scanned_duration = float((end - self.t0) * self.tb)

    def seek(self, pts: int) -> None:
        import av

        try:
            self.container.seek(pts, backward=True, any_frame=False, stream=self.stream)
        except av.error.FFmpegError as exc:
            raise ffmpeg_error(self.name, exc, "cannot seek") from exc
        self.stream.codec_context.flush_buffers()
        self._peeked = None
        self.stats["seeks"] += 1

    # -- keyframe index

    def keyframe(self, ts: float, backward: bool):
        """The index entry of the keyframe at/before (or at/after) ``ts``, in index units."""
        ts = math.floor(ts) if backward else math.ceil(ts)
        i = self.entries.search_timestamp(ts, backward=backward, any_frame=False)
        return self.entries[i] if 0 <= i < len(self.entries) else None

    def landing(self, key) -> int:
        """A seek timestamp that lands on keyframe ``key``: just before the next keyframe.

        FFmpeg's MP4 seek compares presentation times, the index holds decode times; a time
        between this keyframe and the next lands here under either reading.
        """
        following = self.keyframe(key.timestamp + 1, backward=False)
        return following.timestamp - 1 if following is not None else key.timestamp + (1 << 40)

    def position(self, dts: int | None) -> int | None:
        """Decode-order position of the packet with this decode time, from a per-frame index."""
        if dts is None:
            return None
        i = self.entries.search_timestamp(dts, backward=True, any_frame=True)
        if i < 0 or self.entries[i].timestamp != dts:
            return None
        return i - self.leading_discards

    # -- sampling

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> "PyAVReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
