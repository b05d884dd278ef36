"""The PyAV decoding pass: ``sample`` takes a clip from an open ``PyAVReader``, decoding
only the packets the sampling plan needs (the rule is in ``stam_core.video.api``). av is imported
where it is used. Must not import torch.
"""
from __future__ import annotations

import bisect
import itertools
import time

import numpy as np

from stam_core.errors import VideoCorruptError, VideoFormatError, VideoReadError
from stam_core.video.clip import Clip, ClipInfo, duration_warnings
from stam_core.video.frames import (
    CROP,
    Orientation,
    SamplingPlan,
    VariableFrameRate,
    display_matrix,
    fast_model_input,
    to_model_input,
)
from stam_core.video.pyav_reader import PyAVReader

# Damaged streams (docs/decoding.md, "Damaged streams"): the read is an error of kind
# "corrupt" when more than this fraction of the samples were decoded from a damaged stretch
# (after a packet the decoder rejected, before the next keyframe it accepted: a picture built
# on damaged references) or taken far from their place because frames are missing there.
CORRUPT_SAMPLE_FRACTION = 0.25


def sample(reader: PyAVReader, num_frames: int, start: float | None, end: float | None,
           resize: str = "exact") -> Clip:
    """``num_frames`` samples of the open ``reader`` (of the ``start``/``end`` window)."""
    plan = SamplingPlan.make(reader.name, num_frames, reader.duration_s(), start, end)
    return _Sampler(reader, plan, resize).run()


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
    caller rescans every packet's timestamp (``VariableFrameRate``).
    """

    def __init__(self, reader: PyAVReader, plan: SamplingPlan, resize: str = "exact"):
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
        self.orient: Orientation | None = None
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
        self.plan_duration = reader.duration_s()
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

    # -- seeking (index entries are in the index's own units: see PyAVReader.index_shift)

    def _start_key(self, target: int):
        """Where to start decoding for a target: the first keyframe the index places inside its
        middle half (decoding it is all the work), else the last keyframe before its centre."""
        r = self.r
        c, h = self.centre[target] - r.index_shift, self.half
        key = r.keyframe(c - h, backward=False)
        if key is not None and key.timestamp <= c + h:
            return key
        return r.keyframe(c, backward=True)

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
                r.seek(r.landing(key))
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
            key = r.keyframe(mark - 1, backward=True)
            if key is None or key.timestamp >= mark:
                break
        return itertools.chain([first] if first is not None else [], demux)

    # -- positions

    def _note_packet(self, packet) -> None:
        r = self.r
        if self.run_first is None:
            self.run_first = packet.pts
            self.run_base = r.position(packet.dts) if r.full_index else None
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
            raise VariableFrameRate()
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
            self.orient = Orientation(display_matrix(frame), self.r.name)
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
        info = self.r.info(self.orient or Orientation(None))
        info.repeated = len(set(self.indices)) < len(self.indices)
        warnings = self._warnings(info)
        n = len(self.indices)
        if self.damaged_samples + self.missing_samples > CORRUPT_SAMPLE_FRACTION * n:
            raise VideoCorruptError(self.r.name, f"damaged stream: {'; '.join(warnings)} (the limit is "
                                                 f"{CORRUPT_SAMPLE_FRACTION:.0%} of the samples)")
        return Clip(self.frames, list(self.indices), list(self.times), info, warnings, resize=self.resize,
                    convert_ms=1000 * self.convert_s, resize_ms=1000 * self.resize_s)

    def _warnings(self, info: ClipInfo) -> list[str]:
        out = duration_warnings(info)
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
