"""Test videos whose frames say which frame they are, and files that are not valid videos.

``make_video`` encodes frames (jobs.tools.samples.make_video, the one generator) with a 5x5
grid of black/white cells in the middle of the picture (in display orientation) that spells
the frame's index; ``decode_index`` reads it back from a 224x224 output frame (after
resize-shorter-side-256 + centre crop 224), so a test can check that the pixels ``read_clip``
returns are exactly the frame it claims. The grid has orientation markers, so a frame shown
rotated or mirrored does not decode.

Import it as ``from support.videogen import make_video`` (tests/ is on sys.path via conftest.py).
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path

import av
import numpy as np
from PIL import Image

from jobs.tools import samples

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


def make_video(path: str | Path, *, pattern: bool = True, **settings) -> Path:
    """``jobs.tools.samples.make_video`` (settings: see there), each frame's index drawn unless pattern=False."""
    return samples.make_video(path, draw=draw_index if pattern else None, **settings)


class VideoCache:
    """make(name, **make_video settings) -> path: each video encoded once, into ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._made: dict[str, Path] = {}

    def __call__(self, name: str, **settings) -> Path:
        if name not in self._made:
            self._made[name] = make_video(self.folder / name, **settings)
        return self._made[name]


def vfr_timestamps(num_frames: int, fps: float) -> list[float]:
    """The presentation times (seconds) ``make_video(vfr=True)`` gives its frames."""
    return [ms / 1000 for ms in samples.vfr_pts_ms(num_frames, fps)]


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An AAC-in-MP4 file with no video stream."""
    path = Path(path)
    rate = 44100
    wave = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)

    def frames():
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            yield frame

    with av.open(str(path), "w") as container:
        samples.mux_all(container, container.add_stream("aac", rate=rate), frames())
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


def make_false_duration_mkv(path: str | Path, *, claim_s: float = 86_400.0, num_frames: int = 16, fps: int = 8,
                            gop: int = 4) -> Path:
    """A Matroska file of ``num_frames`` real frames (2 s at the defaults) whose header claims
    ``claim_s`` seconds: the Segment Info Duration element is patched after writing.

    FFmpeg's Matroska muxer writes Duration (ID 0x4489) as an 8-byte float in TimecodeScale
    units (1 ms), so the patch keeps every other byte in place; FFmpeg then reports the claim
    as the container's duration, as a job reading the file sees it.
    """
    path = make_video(path, num_frames=num_frames, fps=fps, gop=gop)
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, size 8
    if at < 0:
        raise AssertionError(f"{path}: no 8-byte Duration element to patch")
    data[at + 3:at + 11] = struct.pack(">d", claim_s * 1000.0)
    Path(path).write_bytes(bytes(data))
    return Path(path)
