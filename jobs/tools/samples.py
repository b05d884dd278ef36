"""Generated sample videos: the demo's clips, and the generator the tests and benchmarks build on.

Every generated video goes through ``write_video`` (open a container, add a stream with a
codec and its options, encode the frames, flush). On top of it:

* ``make_sample_video``: the demo's clip, a disc moving over a slowly panning texture.
* ``make_video``: realistic-looking content (``Scene``: a panned multi-scale texture with
  moving objects and sensor grain, which compresses at a real-world bitrate where flat
  colours would not) with the knobs tests and benchmarks need: codec, keyframe interval,
  B-frames, quality, preset, display rotation, variable frame rate, and a hook to draw on
  each frame (the tests draw the frame's index, tests/support/videogen.py).

Imports only numpy, PyAV and Pillow: benchmarks/gpu/ (the GPU check) runs where Ray and boto3 are not installed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libsvtav1",
            "mpeg4": "mpeg4"}
DEFAULT_SUFFIX = {"h264": ".mp4", "hevc": ".mkv", "vp9": ".webm", "vp8": ".webm", "av1": ".mkv", "mpeg4": ".mp4"}
VFR_TICKS = (1, 1, 2, 1, 3)  # make_video(vfr=True): frame durations in ticks of 1/fps, cycled


def mux_all(container: av.container.OutputContainer, stream: av.stream.Stream, frames: Iterable) -> None:
    """Encode ``frames`` into ``stream``, then flush the encoder; every packet goes into ``container``."""
    for frame in frames:
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(path: str | Path, frames: Iterable[np.ndarray | av.VideoFrame], *, size: tuple[int, int],
                fps: float | Fraction, codec: str = "h264", options: dict[str, str] | None = None,
                pix_fmt: str = "yuv420p", rotation: int = 0, time_base: Fraction | None = None) -> Path:
    """Encode ``frames`` (RGB uint8 arrays, or VideoFrames) as a one-stream video; returns the path.

    size: the coded (width, height). codec: a key of ENCODERS or an FFmpeg encoder name.
    options: the encoder's options. rotation: degrees clockwise the player turns the picture
    (display-matrix side data). time_base: the encoder's, for frames that carry their own pts.
    """
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(ENCODERS.get(codec, codec), rate=fps, options=options or {})
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation:
            # FFmpeg's display matrix angle is counterclockwise; ours (like "rotate") is clockwise.
            stream.set_display_rotation(-rotation)
        mux_all(container, stream, (frame if isinstance(frame, av.VideoFrame)
                                    else av.VideoFrame.from_ndarray(frame, format="rgb24") for frame in frames))
    return path


def make_sample_video(path: Path, seed: int, seconds: float = 3.0, fps: int = 15, size=(320, 240)) -> Path:
    """A short H.264 clip: a disc moving over a slowly panning textured background.

    Content that moves coherently (not per-frame noise) encodes and decodes like camera footage.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 160, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((width + 16, height + 16), Image.Resampling.BILINEAR))
    yy, xx = np.mgrid[0:height, 0:width]
    colour = rng.integers(60, 255, size=3)
    radius = 10 + (7 * seed) % 25

    def frame(i: int) -> np.ndarray:
        t = i / fps
        shift = int(8 + 8 * np.sin(2 * np.pi * t / seconds))
        img = background[shift:shift + height, shift:shift + width].copy()
        cx = width / 2 + width / 3 * np.sin(2 * np.pi * t / seconds + seed)
        cy = height / 2 + height / 4 * np.cos(2 * np.pi * t / seconds)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2] = colour
        return img

    return write_video(path, (frame(i) for i in range(int(seconds * fps))), size=size, fps=fps)


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A colourful multi-scale noise texture (uint8 RGB), like foliage or a crowd from afar."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    for cell, amplitude in ((3, 40.0), (12, 45.0), (48, 50.0), (192, 40.0)):
        small = rng.random((max(2, height // cell + 2), max(2, width // cell + 2), 3), dtype=np.float32)
        up = np.stack([np.asarray(Image.fromarray(small[..., k]).resize((width, height), Image.Resampling.BICUBIC))
                       for k in range(3)], axis=2)
        acc += amplitude * (up - 0.5)
    return np.clip(128 + acc, 0, 255).astype(np.uint8)


class Scene:
    """Realistic-ish moving content: a camera sway over a texture, two moving objects, grain.

    Motion depends on time, not on the video's length, so a long and a short video made
    with the same settings look alike frame by frame (and cost alike to decode).
    """

    def __init__(self, width: int, height: int, fps: float, seed: int, grain: int):
        self.width, self.height, self.fps, self.grain = width, height, fps, grain
        self.pan = max(8, width // 4)
        self.background = texture(width + self.pan, height + self.pan // 2, seed)
        self.objects = [texture(max(8, width // 5), max(8, height // 4), seed + 1 + k) for k in range(2)]
        self.rng = np.random.default_rng(seed + 100)

    def frame(self, i: int) -> np.ndarray:
        t = i / self.fps
        x = round(self.pan * (0.5 + 0.5 * math.sin(2 * math.pi * t / 8)))
        y = round(self.pan // 4 * (1 + math.sin(2 * math.pi * t / 5)))
        img = self.background[y:y + self.height, x:x + self.width].copy()
        for k, obj in enumerate(self.objects):
            oh, ow = obj.shape[:2]
            ox = round((self.width - ow) * (0.5 + 0.45 * math.sin(2 * math.pi * t / (3 + k) + k)))
            oy = round((self.height - oh) * (0.5 + 0.45 * math.cos(2 * math.pi * t / (4 + k))))
            img[oy:oy + oh, ox:ox + ow] = obj
        if self.grain:
            noise = self.rng.integers(-self.grain, self.grain + 1, size=img.shape, dtype=np.int16)
            img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return img


def encoder_options(codec: str, gop: int | None = None, bframes: int | None = None, quality: int | None = None,
                    preset: str | None = None) -> dict[str, str]:
    """FFmpeg encoder options for ``make_video``'s settings (see there)."""
    opts: dict[str, str] = {}
    if gop is not None:
        opts["g"] = str(gop)
    if codec in ("h264", "hevc"):
        opts["threads"] = "1"  # faster for small pictures, and the output is deterministic
    if codec == "h264":
        opts["preset"] = preset or "veryfast"
        opts["crf"] = str(quality if quality is not None else 23)
        if gop is not None:  # a fixed GOP: no extra keyframes at scene cuts
            opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        if bframes is not None:
            opts["bf"] = str(bframes)
    elif codec == "hevc":
        params = ["log-level=error"]
        if gop is not None:
            params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if bframes is not None:
            params.append(f"bframes={bframes}")
        opts.update(preset=preset or "superfast", crf=str(quality if quality is not None else 28),
                    **{"x265-params": ":".join(params)})
    elif codec in ("vp9", "vp8"):
        opts.update(deadline="realtime", **{"cpu-used": "8", "crf": str(quality if quality is not None else 32)})
        opts["b"] = "0" if codec == "vp9" else "1M"
    elif codec == "av1":
        # Presets above 8 smear the tests' index grid; unpatterned content can go faster.
        opts.update(preset=preset or "8", crf=str(quality if quality is not None else 30))
        if gop is None:
            opts["g"] = "64"
    elif codec == "mpeg4":
        opts["qscale"] = str(quality if quality is not None else 4)
        opts["bf"] = str(bframes if bframes is not None else 2)
    return opts


def vfr_pts_ms(num_frames: int, fps: float) -> list[int]:
    """The presentation times (milliseconds) ``make_video(vfr=True)`` gives its frames."""
    out, ticks = [], 0
    for i in range(num_frames):
        out.append(round(ticks * 1000 / fps))
        ticks += VFR_TICKS[i % len(VFR_TICKS)]
    return out


def make_video(path: str | Path, *, codec: str = "h264", num_frames: int = 48, fps: float = 24,
               size: tuple[int, int] = (320, 240), rotation: int = 0, vfr: bool = False, gop: int | None = None,
               bframes: int | None = None, quality: int | None = None, grain: int = 0, preset: str | None = None,
               seed: int = 0, options: dict[str, str] | None = None,
               draw: Callable[[np.ndarray, int], None] | None = None) -> Path:
    """Encode ``Scene`` content and return the path.

    size: (width, height) as displayed. rotation: degrees clockwise the player turns the stored
    picture to display it (the phone "rotate" tag), written as display-matrix side data; the
    frames are stored turned the other way so the displayed picture is upright. vfr: frame
    durations cycle through VFR_TICKS ticks of 1/fps (timestamps in milliseconds). gop:
    keyframe interval (None: the encoder's default). bframes: None keeps the encoder default.
    quality: CRF (qscale for MPEG-4). grain: sensor noise amplitude. preset: encoder speed
    preset: x264/x265 names (default veryfast/superfast; "ultrafast" has no B-frames) or
    SVT-AV1 numbers (default "8"). options: encoder options that replace those the settings
    give. draw(picture, index): draws on each upright RGB picture in place before encoding.
    """
    if codec not in ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; one of {sorted(ENCODERS)}")
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    rotation %= 360
    width, height = size
    coded = (height, width) if rotation in (90, 270) else (width, height)
    # x264/x265 refuse odd sizes with 4:2:0 chroma; 4:4:4 keeps the exact size.
    pix_fmt = "yuv444p" if (coded[0] % 2 or coded[1] % 2) and codec in ("h264", "hevc") else "yuv420p"
    scene = Scene(width, height, fps, seed, grain)
    pts_ms = vfr_pts_ms(num_frames, fps) if vfr else None

    def frames():
        for i in range(num_frames):
            img = scene.frame(i)
            if draw is not None:
                draw(img, i)
            stored = np.ascontiguousarray(np.rot90(img, k=rotation // 90))  # undone by the player's clockwise turn
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            yield frame

    return write_video(path, frames(), size=coded, fps=Fraction(fps).limit_denominator(1001), codec=codec,
                       options={**encoder_options(codec, gop, bframes, quality, preset), **(options or {})},
                       pix_fmt=pix_fmt, rotation=rotation, time_base=Fraction(1, 1000) if vfr else None)
