"""Decode cost: reference-frame sampling is bit-exact with a full decode, the fast resize stays
near the official transform, and every read accounts for its CPU time (Clip.decode_cpu_ms and
its split). Counts and bounds, never timings (benchmarks/decode.py prints those)."""
from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # support/, also when run without conftest.py

import stam_core  # noqa: E402
from jobs.tools.samples import DEFAULT_SUFFIX  # noqa: E402
from stam_core.video.frames import Orientation, display_matrix, to_model_input  # noqa: E402
from support.videogen import VideoCache, decode_index, make_video, official_transform  # noqa: E402

FRAMES = 16


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> VideoCache:
    return VideoCache(tmp_path_factory.mktemp("cost"))


def every_frame(path: Path, skip_frame: str = "DEFAULT") -> list:
    """Every frame a plain decode gives (display order), as VideoFrames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = skip_frame
        return list(container.decode(stream))


def model_inputs(frames: list) -> list[np.ndarray]:
    """The exact transform of each frame, from a full decode: RGB, display orientation, PIL resize + crop."""
    orient = Orientation(display_matrix(frames[0]))
    return [to_model_input(orient(frame.to_ndarray(format="rgb24"))) for frame in frames]


def assert_bit_exact(clip: stam_core.Clip, path: Path) -> None:
    expected = model_inputs(every_frame(path))
    for k, index in enumerate(clip.indices):
        assert np.array_equal(clip.frames[k], expected[index]), (k, index)


def make_long_b_runs(path: Path, container_suffix_frames: int = 240, fps: int = 24) -> Path:
    """H.264 whose B-frames are all non-reference and come 12 in a row (no pyramid): most
    middle halves (7.5 frames at 16 samples of 10 s) hold no reference frame at all."""
    n = container_suffix_frames
    return make_video(path, num_frames=n, fps=fps, grain=3, options={
        "x264-params": f"keyint={n}:min-keyint={n}:scenecut=0:bframes=12:b-adapt=0:b-pyramid=none"})


# ---- reference frames: bit-exact with a full decode -----------------------------------------

@pytest.mark.parametrize("codec,bframes", [("h264", 3), ("h264", 8), ("hevc", 3), ("vp9", None), ("av1", None),
                                           ("mpeg4", None)])
def test_reference_frame_samples_are_bit_exact(videos, codec, bframes):
    # One long GOP with B-frames: every sample comes from decoding with non-reference frames skipped.
    path = videos(f"ref_{codec}_{bframes}{DEFAULT_SUFFIX[codec]}", codec=codec, num_frames=240, gop=240,
                  bframes=bframes, grain=3)
    clip = stam_core.read_clip(path, FRAMES, timeout=None)
    assert [decode_index(frame) for frame in clip.frames] == clip.indices
    assert_bit_exact(clip, path)
    # Every sample is a reference frame: what a decode that skips all non-reference frames gives.
    references = {frame.pts for frame in every_frame(path, "NONREF")}
    with av.open(str(path)) as container:
        pts = sorted(frame.pts for frame in container.decode(video=0))
    assert all(pts[i] in references for i in clip.indices)
    # ... nearest the centre among those inside the middle half (the sampling rule).
    with av.open(str(path)) as container:
        tb = float(container.streams.video[0].time_base)
    half = 10.0 / (4 * FRAMES)
    ref_times = sorted((p - pts[0]) * tb for p in references)
    for i, t in enumerate(clip.timestamps):
        centre = (i + 0.5) * 10.0 / FRAMES
        inside = [r for r in ref_times if abs(r - centre) <= half + 1e-6]
        assert inside and abs(t - centre) == pytest.approx(min(abs(r - centre) for r in inside), abs=1e-3)
    if codec in ("h264", "hevc"):  # B-frames: far fewer frames decoded than the stream holds
        assert clip.info.frames_decoded <= len(references) + 2


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_middle_half_without_a_reference_frame_is_decoded_whole(videos, suffix):
    path = make_long_b_runs(videos.folder / f"b_runs{suffix}")
    references = every_frame(path, "NONREF")
    assert len(references) < 30  # 12 B-frames between references: most middle halves hold none
    clip = stam_core.read_clip(path, FRAMES, timeout=None)
    assert [decode_index(frame) for frame in clip.frames] == clip.indices
    assert_bit_exact(clip, path)
    # The reference frame nearest the centre where the middle half holds one; elsewhere the
    # frame nearest the centre (24 fps: within half a frame), as without skipping.
    ref_times = [k / 24 for k in sorted(decode_index(f) for f in model_inputs(references))]
    half = 10.0 / (4 * FRAMES)
    redone = 0
    for t, i in zip(clip.timestamps, range(FRAMES)):
        centre = (i + 0.5) * 10.0 / FRAMES
        inside = [r for r in ref_times if abs(r - centre) <= half + 1e-6]
        if inside:
            assert abs(t - centre) == pytest.approx(min(abs(r - centre) for r in inside), abs=1e-3)
        else:
            redone += 1
            assert abs(t - centre) <= 0.5 / 24 + 1e-3
    assert redone >= 4
    assert clip.warnings == []


def test_rotation_and_vfr_still_exact(videos):
    rotated = videos("rot90_long.mp4", rotation=90, num_frames=240, gop=240, bframes=3)
    clip = stam_core.read_clip(rotated, FRAMES, timeout=None)
    assert clip.info.rotation == 90 and [decode_index(f) for f in clip.frames] == clip.indices
    assert_bit_exact(clip, rotated)
    vfr = videos("vfr_long.mkv", vfr=True, num_frames=240, gop=240, bframes=3)
    clip = stam_core.read_clip(vfr, FRAMES, timeout=None)
    assert [decode_index(f) for f in clip.frames] == clip.indices
    assert_bit_exact(clip, vfr)


# ---- the fast resize ------------------------------------------------------------------------

@pytest.mark.parametrize("size,bound", [
    ((1280, 720), 1.5),  # landscape HD, what "fast" is for: measured 1.2 to 1.3
    ((720, 1280), 2.5),  # portrait HD: measured about 2.0, over the 1.5 goal (docs/decoding.md)
])
def test_fast_resize_close_to_the_official_transform(videos, size, bound):
    # Textured, grainy, panning HD content.
    path = videos(f"hd_{size[0]}x{size[1]}.mp4", size=size, num_frames=75, fps=25, pattern=False, grain=6,
                  gop=75, bframes=3)
    fast = stam_core.read_clip(path, 8, timeout=None, resize="fast")
    exact = stam_core.read_clip(path, 8, timeout=None)
    assert (fast.resize, exact.resize) == ("fast", "exact")
    assert fast.indices == exact.indices
    frames = every_frame(path)
    for k, index in enumerate(fast.indices):
        official = official_transform(frames[index].to_ndarray(format="rgb24"))
        assert np.abs(fast.frames[k].astype(np.int16) - official).mean() <= bound, index
        assert np.abs(exact.frames[k].astype(np.int16) - official).mean() <= 0.25, index


@pytest.mark.parametrize("rotation", [90, 270])
def test_fast_resize_keeps_orientation(videos, rotation):
    path = videos(f"fast_rot{rotation}.mp4", rotation=rotation, size=(320, 240), num_frames=48)
    clip = stam_core.read_clip(path, FRAMES, timeout=None, resize="fast")
    assert [decode_index(frame) for frame in clip.frames] == clip.indices
    assert clip.frames.shape == (FRAMES, 224, 224, 3) and clip.frames.dtype == np.uint8


def test_resize_argument(videos):
    path = videos("plain.mp4", num_frames=48)
    with pytest.raises(ValueError, match="resize"):
        stam_core.read_clip(path, FRAMES, timeout=None, resize="nearest")
    with pytest.raises(ValueError, match="PyAV"):
        stam_core.read_clip(path, FRAMES, timeout=None, resize="fast", decoder="decord")
    assert stam_core.read_clip(path, FRAMES, timeout=30, resize="fast").resize == "fast"  # through the worker


# ---- accounting -----------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 30])
@pytest.mark.parametrize("resize", ["exact", "fast"])
def test_decode_cpu_ms_is_counted_and_split(videos, timeout, resize):
    path = videos("hd_1280x720.mp4", size=(1280, 720), num_frames=75, fps=25, pattern=False, grain=6,
                  gop=75, bframes=3)
    clip = stam_core.read_clip(path, 8, timeout=timeout, resize=resize)
    assert clip.resize == resize
    # Plausible: some work was done, and not more than a few seconds of it for 3 s of 720p.
    assert 1 < clip.decode_cpu_ms < 20_000
    assert clip.decode_ms > 0 and clip.resize_ms > 0
    assert clip.convert_ms > 0 if resize == "exact" else clip.convert_ms == 0
    assert clip.decode_ms + clip.convert_ms + clip.resize_ms == pytest.approx(clip.decode_cpu_ms, abs=0.01)
    # Decoding 3 s of 720p H.264 costs more than converting and resizing 8 frames.
    assert clip.decode_ms > clip.convert_ms + clip.resize_ms


def test_decode_cpu_ms_grows_with_the_work(videos):
    short = videos("cost_short.mp4", size=(640, 360), num_frames=24, gop=24, pattern=False, grain=4)
    long = videos("cost_long.mp4", size=(640, 360), num_frames=240, gop=240, pattern=False, grain=4)
    a = stam_core.read_clip(short, 4, timeout=None)
    b = stam_core.read_clip(long, 16, timeout=None)
    assert b.info.frames_decoded > 3 * a.info.frames_decoded
    assert b.decode_cpu_ms > a.decode_cpu_ms


def test_decord_reports_the_total_only(videos):
    clip = stam_core.read_clip(videos("plain.mp4", num_frames=48), FRAMES, timeout=None, decoder="decord")
    assert clip.decode_cpu_ms > 0
    assert clip.decode_ms == clip.convert_ms == clip.resize_ms == -1
