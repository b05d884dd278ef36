"""Test videos whose frames say which frame they are.

``make_video`` encodes frames with a 5x5 grid of black/white cells in the middle of the
picture (in display orientation) that spells the frame's index; ``decode_index`` reads it
back from a 224x224 output frame (after resize-shorter-side-256 + centre crop 224), so a test
can check that the pixels ``read_clip`` returns are exactly the frame it claims. The grid
has orientation markers, so a frame shown rotated or mirrored does not decode.

Also here: realistic-looking content for transform and speed checks (``pattern=False``:
a panned multi-scale texture with moving objects and sensor grain, which compresses at a
real-world bitrate where flat colours would not), and files that are not valid videos.

Import it as ``from videogen import make_video`` (tests/ is on sys.path via conftest.py).
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libsvtav1",
            "mpeg4": "mpeg4"}
DEFAULT_SUFFIX = {"h264": ".mp4", "hevc": ".mkv", "vp9": ".webm", "vp8": ".webm", "av1": ".mkv", "mpeg4": ".mp4"}

GRID = 5  # cells per side
PATTERN_FRACTION = 0.8  # the grid's side, as a fraction of the picture's shorter side
# (row, col) -> value: asymmetric under every rotation and mirror, so a wrongly oriented
# frame fails to decode instead of decoding to a different index.
MARKERS = {(0, 0): 1, (0, 4): 0, (4, 0): 0, (4, 4): 0, (0, 1): 1, (1, 0): 0}
DATA_CELLS = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in MARKERS]  # 19 cells
DATA_BITS, CHECK_BITS = 16, 3
MAX_INDEX = 2 ** DATA_BITS - 1
WHITE, BLACK = 235, 16  # video-range extremes survive YUV round trips without clipping


def _bits(index: int) -> list[int]:
    check = bin(index).count("1") & 0b111
    value = index | (check << DATA_BITS)
    return [(value >> k) & 1 for k in range(DATA_BITS + CHECK_BITS)]


def _grid_box(width: int, height: int) -> tuple[int, int, float]:
    """Top-left corner and cell size of the grid in a width x height display picture."""
    side = PATTERN_FRACTION * min(width, height)
    return round((width - side) / 2), round((height - side) / 2), side / GRID


@functools.lru_cache(maxsize=8)
def _cells(width: int, height: int) -> dict[tuple[int, int], tuple[slice, slice]]:
    x0, y0, cell = _grid_box(width, height)
    return {(r, c): (slice(y0 + round(r * cell), y0 + round((r + 1) * cell)),
                     slice(x0 + round(c * cell), x0 + round((c + 1) * cell)))
            for r in range(GRID) for c in range(GRID)}


def draw_index(img: np.ndarray, index: int) -> None:
    """Draw ``index`` as the cell grid into an RGB display-orientation picture, in place."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index {index} does not fit in {DATA_BITS} bits")
    cells = _cells(img.shape[1], img.shape[0])
    values = dict(MARKERS)
    values.update(zip(DATA_CELLS, _bits(index)))
    for rc, bit in values.items():
        img[cells[rc]] = WHITE if bit else BLACK


def decode_index(frame: np.ndarray) -> int:
    """The index drawn by ``draw_index`` in a 224x224 RGB output frame; ValueError if none.

    The output frame is the centre crop (224/256 of the shorter side) of the display picture,
    so the grid's geometry in it does not depend on the source's size.
    """
    frame = np.asarray(frame)
    if frame.shape != (224, 224, 3):
        raise ValueError(f"expected a 224x224x3 frame, got {frame.shape}")
    grey = frame.astype(np.float32).mean(axis=2)
    side = PATTERN_FRACTION * 256  # the shorter side was resized to 256; the crop is centred
    origin = (224 - side) / 2
    cell = side / GRID
    half = max(1, round(cell / 4))  # average the middle half of each cell: edges blur
    bits = {}
    for r in range(GRID):
        for c in range(GRID):
            cy, cx = round(origin + (r + 0.5) * cell), round(origin + (c + 0.5) * cell)
            mean = grey[cy - half:cy + half, cx - half:cx + half].mean()
            if 70 < mean < 180:
                raise ValueError(f"cell ({r}, {c}) is neither black nor white (mean {mean:.0f}): no index pattern")
            bits[r, c] = int(mean >= 128)
    if any(bits[rc] != v for rc, v in MARKERS.items()):
        raise ValueError("orientation markers do not match: the frame is rotated or mirrored")
    value = sum(bits[rc] << k for k, rc in enumerate(DATA_CELLS))
    index, check = value & MAX_INDEX, value >> DATA_BITS
    if check != bin(index).count("1") & 0b111:
        raise ValueError("index check bits do not match")
    return index


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


class _Scene:
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


def _encoder_options(codec: str, gop: int | None, bframes: int | None, quality: int | None,
                     preset: str | None) -> dict[str, str]:
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
        # Presets above 8 smear the index grid; unpatterned content can go faster.
        opts.update(preset=preset or "8", crf=str(quality if quality is not None else 30))
        if gop is None:
            opts["g"] = "64"
    elif codec == "mpeg4":
        opts["qscale"] = str(quality if quality is not None else 4)
        opts["bf"] = str(bframes if bframes is not None else 2)
    return opts


def make_video(path: str | Path, *, codec: str = "h264", num_frames: int = 48, fps: float = 24,
               size: tuple[int, int] = (320, 240), rotation: int = 0, vfr: bool = False, pattern: bool = True,
               gop: int | None = None, bframes: int | None = None, quality: int | None = None,
               grain: int = 0, preset: str | None = None, seed: int = 0) -> Path:
    """Encode a test video and return its path.

    size: (width, height) as displayed. rotation: degrees clockwise the player turns the stored
    picture to display it (the phone "rotate" tag), written as display-matrix side data; the
    frames are stored turned the other way so the displayed picture is upright. vfr: frame
    durations cycle through 1, 1, 2, 1, 3 ticks of 1/fps (timestamps in milliseconds).
    pattern: draw each frame's index (see ``decode_index``); otherwise realistic content
    only. gop: keyframe interval (None: the encoder's default). bframes: None keeps the
    encoder default. quality: CRF (qscale for MPEG-4). grain: sensor noise amplitude.
    preset: encoder speed preset: x264/x265 names (default veryfast/superfast; "ultrafast"
    has no B-frames) or SVT-AV1 numbers (default "8").
    """
    path = Path(path)
    if codec not in ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; one of {sorted(ENCODERS)}")
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    rotation %= 360
    width, height = size
    coded_w, coded_h = (height, width) if rotation in (90, 270) else (width, height)
    odd = coded_w % 2 or coded_h % 2
    # x264/x265 refuse odd sizes with 4:2:0 chroma; 4:4:4 keeps the exact size.
    pix_fmt = "yuv444p" if odd and codec in ("h264", "hevc") else "yuv420p"
    scene = _Scene(width, height, fps, seed, grain)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(ENCODERS[codec], rate=Fraction(fps).limit_denominator(1001),
                                      options=_encoder_options(codec, gop, bframes, quality, preset))
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, pix_fmt
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            # FFmpeg's display matrix angle is counterclockwise; ours (like "rotate") is clockwise.
            stream.set_display_rotation(-rotation)
        ticks = 0
        for i in range(num_frames):
            img = scene.frame(i)
            if pattern:
                draw_index(img, i)
            coded = np.ascontiguousarray(np.rot90(img, k=rotation // 90))  # undone by the player's clockwise turn
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = round(ticks * 1000 / fps), Fraction(1, 1000)
                ticks += (1, 1, 2, 1, 3)[i % 5]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def vfr_timestamps(num_frames: int, fps: float) -> list[float]:
    """The presentation times (seconds) ``make_video(vfr=True)`` gives its frames."""
    out, ticks = [], 0
    for i in range(num_frames):
        out.append(round(ticks * 1000 / fps) / 1000)
        ticks += (1, 1, 2, 1, 3)[i % 5]
    return out


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An AAC-in-MP4 file with no video stream."""
    path = Path(path)
    rate = 44100
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_bad_inputs(folder: str | Path) -> dict[str, Path]:
    """One file per kind of undecodable input, by kind name.

    empty, not_video (random bytes), text (a text file named .mp4), audio_only,
    truncated_mp4 (cut before its index: nothing to play), truncated_mkv (the second half
    missing: the frames its header promises are not there), unsupported_codec (an MP4 whose
    sample entry names a codec FFmpeg does not know), corrupt_frames (a valid container
    whose packets are garbage: no decodable frame).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"empty": folder / "empty.mp4", "not_video": folder / "noise.mp4", "text": folder / "notes.mp4"}
    out["empty"].write_bytes(b"")
    out["not_video"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    out["text"].write_text("this is not a video\n" * 100)
    out["audio_only"] = make_audio_only(folder / "audio.mp4")

    good_mp4 = make_video(folder / "good.mp4", num_frames=48, gop=12)
    data = good_mp4.read_bytes()
    out["truncated_mp4"] = folder / "truncated.mp4"  # FFmpeg writes the index (moov) last
    out["truncated_mp4"].write_bytes(data[: len(data) // 2])

    good_mkv = make_video(folder / "good.mkv", num_frames=96, gop=12)
    data = good_mkv.read_bytes()
    out["truncated_mkv"] = folder / "truncated.mkv"
    out["truncated_mkv"].write_bytes(data[: len(data) // 3])

    data = good_mp4.read_bytes()
    entry = data.index(b"avc1", data.index(b"stsd"))
    out["unsupported_codec"] = folder / "unknown_codec.mp4"
    out["unsupported_codec"].write_bytes(data[:entry] + b"zzzz" + data[entry + 4:])

    out["corrupt_frames"] = _corrupt_packets(good_mkv, folder / "corrupt.mkv")
    return out


def _corrupt_packets(src: Path, dst: Path) -> Path:
    """Remux ``src`` with every packet's payload replaced by random bytes."""
    rng = np.random.default_rng(1)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            bad = av.Packet(rng.integers(0, 256, max(16, packet.size), dtype=np.uint8).tobytes())
            bad.pts, bad.dts, bad.time_base, bad.stream = packet.pts, packet.dts, packet.time_base, out_stream
            bad.is_keyframe = packet.is_keyframe
            out.mux(bad)
    return dst


def official_transform(rgb: np.ndarray) -> np.ndarray:
    """The official evaluation transform, for reference: torchvision Resize(256) + CenterCrop(224) on PIL."""
    image = Image.fromarray(rgb)
    w, h = image.size
    new_w, new_h = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = int(round((new_w - 224) / 2.0)), int(round((new_h - 224) / 2.0))
    return np.asarray(image.crop((left, top, left + 224, top + 224)))
