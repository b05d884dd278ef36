"""What the readers share: display orientation, the model transform and the sampling plan.

Used by the readers (``pyav_reader``, ``pyav_sampler``, ``decord_reader``); the sampling
rule and the transform are described in ``stam_core.video.api``, which re-exports
``to_model_input``, ``SHORT_SIDE`` and ``CROP``. Must not import torch (see ``stam_core.video.api``).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from stam_core.errors import VideoError, VideoFormatError, VideoReadError

SHORT_SIDE = 256  # official transform: Resize(256) ...
CROP = 224  # ... then CenterCrop(224)


class VariableFrameRate(Exception):
    """Raised by the PyAV sampler when frame positions cannot be derived from the frame rate;
    the reader then rescans every packet's timestamp (``reading``)."""


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


def display_matrix(frame) -> tuple[int, ...] | None:
    from av.sidedata.sidedata import Type

    for side_data in frame.side_data:
        if side_data.type == Type.DISPLAYMATRIX:
            return struct.unpack("=9i", bytes(side_data))
    return None


class Orientation:
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


def resize_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """(new width, new height, crop left, crop top) of Resize(256) + CenterCrop(224) for a
    width x height picture, with torchvision's arithmetic (``int()`` of the longer side)."""
    if width <= height:
        new_w, new_h = SHORT_SIDE, int(SHORT_SIDE * height / width)
    else:
        new_w, new_h = int(SHORT_SIDE * width / height), SHORT_SIDE
    return new_w, new_h, int(round((new_w - CROP) / 2.0)), int(round((new_h - CROP) / 2.0))


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """Resize the shorter side to 256 (PIL bilinear, aspect kept) and centre-crop 224x224.

    Same arithmetic as torchvision's Resize(256) + CenterCrop(224) on a PIL image, but PIL
    only computes the cropped region (``box``), which gives the same pixels for less work.
    """
    from PIL import Image

    height, width = rgb.shape[:2]
    new_w, new_h, left, top = resize_geometry(width, height)
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + CROP) * sx, (top + CROP) * sy)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box))


# swscale's filter for resize="fast" (measured against the official transform in
# docs/decoding.md, "Two resize paths").
FAST_INTERPOLATION = "BILINEAR"


def fast_model_input(frame, orient: Orientation, reformatter) -> np.ndarray:
    """resize="fast": swscale scales the decoded (YUV) picture straight to the resized size
    while converting it to RGB, then the picture is turned and centre-cropped to 224x224.

    ``frame`` is a PyAV VideoFrame as decoded (stored orientation), ``reformatter`` a PyAV
    VideoReformatter kept for the clip (one scaler context).
    """
    width, height = orient.display_size(frame.width, frame.height)
    new_w, new_h, left, top = resize_geometry(width, height)
    stored_w, stored_h = (new_h, new_w) if orient.transpose else (new_w, new_h)
    rgb = reformatter.reformat(frame, width=stored_w, height=stored_h, format="rgb24",
                               interpolation=FAST_INTERPOLATION).to_ndarray()
    return np.ascontiguousarray(orient(rgb)[top:top + CROP, left:left + CROP])


# ---- sampling plan -----------------------------------------------------------------------

@dataclass
class SamplingPlan:
    """Segment centres and middle halves in seconds from the first frame."""

    centres: list[float]
    half: float  # duration / (4 * num_frames)

    @classmethod
    def make(cls, name: str, num_frames: int, duration: float, start: float | None,
             end: float | None) -> SamplingPlan:
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
