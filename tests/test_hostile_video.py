"""Hostile and odd input for stam_core.read_clip / probe_video: pictures too large for the
limit, running out of memory, still images posing as videos, damaged streams, and local
file names that are not UTF-8. Videos are generated here or with tests/support/videogen.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # support/, also when run without conftest.py

import stam_core  # noqa: E402
from jobs.tools.samples import write_video  # noqa: E402
from stam_core.video import decode_worker  # noqa: E402
from stam_core.video.decode_worker import decode_memory_limit  # noqa: E402
from support import decode_faults  # noqa: E402
from support.videogen import decode_index, draw_index, make_false_duration_mkv, make_video  # noqa: E402

FRAMES = 16
# Enough for the worker itself (about 65 MB of data at rest) and opening a file, far too
# little for one 8192x8192 picture (96 MB as YUV, 192 MB more as RGB).
SMALL_MEMORY = 300 << 20


def assert_exact(clip: stam_core.Clip, fps: float) -> None:
    assert [decode_index(frame) for frame in clip.frames] == list(clip.indices)
    assert clip.timestamps == pytest.approx([i / fps for i in clip.indices], abs=1e-3)


def make_flat(path: Path, width: int, height: int, num_frames: int = 4) -> Path:
    """A few identical flat frames with libx264: an 8192x8192 file of about 200 KB."""
    frame = av.VideoFrame(width, height, "yuv420p")  # built as YUV: no 8192x8192 RGB picture in memory
    for plane, value in zip(frame.planes, (80, 128, 128)):
        np.frombuffer(plane, np.uint8)[:] = value

    def frames():
        for i in range(num_frames):
            frame.pts = i  # the same frame each time: the encoder would number it once only
            yield frame

    return write_video(path, frames(), size=(width, height), fps=24,
                       options={"preset": "ultrafast", "crf": "35", "threads": "1"})


def make_mjpeg(path: Path, num_frames: int) -> Path:
    """An MJPEG video (what webcams and old cameras write), frames carrying their index."""
    def frames():
        for i in range(num_frames):
            img = np.full((240, 320, 3), 128, np.uint8)
            draw_index(img, i)
            yield img

    return write_video(path, frames(), size=(320, 240), fps=24, codec="mjpeg", pix_fmt="yuvj420p")


def overwrite(src: Path, dst: Path, lo: float, hi: float, seed: int = 0) -> Path:
    """A copy of ``src`` whose bytes from fraction ``lo`` to ``hi`` of its length are random."""
    data = bytearray(src.read_bytes())
    a, b = int(len(data) * lo), int(len(data) * hi)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def huge(folder):
    path = make_flat(folder / "8192x8192.mp4", 8192, 8192)
    assert path.stat().st_size < 1 << 20
    return path


# ---- max_pixels and the memory limit -------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 30])
def test_too_large_is_refused_from_the_header(huge, timeout):
    # Under SMALL_MEMORY, decoding a single picture would fail: the refusal decodes nothing.
    kwargs = {} if timeout is None else {"memory_limit": SMALL_MEMORY}
    for call in (stam_core.read_clip, stam_core.probe_video):
        with pytest.raises(stam_core.VideoTooLargeError) as caught:
            call(huge, timeout=timeout, **kwargs)
        error = caught.value
        assert error.kind == "too_large" and error.source == str(huge)
        assert "8192x8192" in error.reason and f"{stam_core.DEFAULT_MAX_PIXELS:,}" in error.reason


def test_max_pixels_is_the_callers(huge, folder):
    small = make_video(folder / "small.mp4", num_frames=24)  # 320x240
    with pytest.raises(stam_core.VideoTooLargeError, match="320x240"):
        stam_core.read_clip(small, FRAMES, timeout=30, max_pixels=320 * 240 - 1)
    assert_exact(stam_core.read_clip(small, FRAMES, timeout=30, max_pixels=320 * 240), fps=24)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            stam_core.read_clip(small, FRAMES, max_pixels=bad)
    with pytest.raises(ValueError):
        stam_core.read_clip(small, FRAMES, memory_limit=0)


def test_over_the_memory_limit_is_out_of_memory(huge, folder):
    small = make_video(folder / "small.mp4", num_frames=24)
    stam_core.read_clip(small, FRAMES, timeout=30)
    pid = decode_worker.worker_pid()
    with pytest.raises(stam_core.VideoOutOfMemoryError) as caught:
        stam_core.read_clip(huge, FRAMES, timeout=30, max_pixels=None, memory_limit=SMALL_MEMORY)
    assert caught.value.kind == "out_of_memory" and caught.value.source == str(huge)
    # The worker is replaced (its heap may be left large); the next call works as usual.
    assert_exact(stam_core.read_clip(small, FRAMES, timeout=30), fps=24)
    assert decode_worker.worker_pid() != pid
    # Without a memory limit the same file decodes.
    clip = stam_core.read_clip(huge, 4, timeout=60, max_pixels=None)
    assert (clip.info.width, clip.info.height) == (8192, 8192) and clip.warnings == []


def test_4k_decodes_under_the_default_limits(folder):
    path = make_video(folder / "4k.mp4", size=(3840, 2160), num_frames=12, preset="ultrafast")
    clip = stam_core.read_clip(path, 8, timeout=120)
    assert_exact(clip, fps=24)
    assert (clip.info.width, clip.info.height) == (3840, 2160) and clip.warnings == []


def test_decode_memory_limit():
    assert decode_memory_limit(None) is None
    default = decode_memory_limit(stam_core.DEFAULT_MAX_PIXELS)
    assert 1 << 30 < default < 4 << 30  # docs/decoding.md: measured need at 8K is 0.8 GB
    assert decode_memory_limit(3840 * 2160) < default


def test_every_form_of_running_out_of_memory_is_out_of_memory(folder, monkeypatch):
    from stam_core.video import reading

    path = make_video(folder / "small.mp4", num_frames=24)
    name = str(path)
    with av.open(name) as container:
        stream = container.streams.video[0]

        class Reader:  # what translate_errors needs of an open reader
            @staticmethod
            def coded_pixels():
                return stream.codec_context.width * stream.codec_context.height

        try:
            np.empty(1 << 62, np.uint8)
        except MemoryError as exc:  # numpy's own subclass, as PIL and numpy raise it
            numpy_error = exc
        errors = [MemoryError(), numpy_error, av.error.MemoryError(12, "Cannot allocate memory"),
                  OSError(12, "Cannot allocate memory")]
        for exc in errors:
            with pytest.raises(stam_core.VideoOutOfMemoryError):
                with reading.translate_errors(name, Reader()):
                    raise exc
        # FFmpeg reports some failed allocations as other errors (swscale: EAGAIN): with no
        # memory left they are out of memory, with memory left they are what they say.
        disguised = [av.error.BlockingIOError(11, "Resource temporarily unavailable"),
                     av.error.InvalidDataError(1094995529, "Invalid data found when processing input"),
                     stam_core.VideoFormatError(name, "no decodable video frame")]
        for exhausted, expected in ((True, stam_core.VideoOutOfMemoryError), (False, stam_core.VideoFormatError)):
            monkeypatch.setattr(reading, "memory_exhausted", lambda reader, exhausted=exhausted: exhausted)
            for exc in disguised:
                with pytest.raises(expected) as caught:
                    with reading.translate_errors(name, Reader()):
                        raise exc
                assert type(caught.value) is expected


def test_worker_killed_for_memory_is_out_of_memory(folder, tmp_path):
    path = make_video(folder / "small.mp4", num_frames=24)
    with decode_faults.injected(tmp_path) as decode_fault:
        decode_fault("oom_kill")  # SIGKILL, as the OOM killer sends
        with pytest.raises(stam_core.VideoOutOfMemoryError, match="SIGKILL"):
            stam_core.read_clip(path, FRAMES, timeout=30)
        decode_fault(None)
        assert_exact(stam_core.read_clip(path, FRAMES, timeout=30), fps=24)


# ---- still images posing as videos -----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "JPEG2000"])
@pytest.mark.parametrize("timeout", [None, 30])
def test_a_picture_renamed_mp4_is_not_a_video(folder, fmt, timeout):
    path = folder / f"picture_{fmt.lower()}.mp4"
    if not path.exists():
        img = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        Image.fromarray(img).save(path, format=fmt)
    with pytest.raises(stam_core.VideoNotAVideoError) as caught:
        stam_core.read_clip(path, FRAMES, timeout=timeout)
    assert caught.value.kind == "not_a_video" and "not a video" in caught.value.reason
    with pytest.raises(stam_core.VideoNotAVideoError):
        stam_core.probe_video(path, timeout=timeout)


@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mp4"])
def test_mjpeg_video_still_decodes(folder, suffix):
    path = make_mjpeg(folder / f"mjpeg{suffix}", num_frames=48)
    clip = stam_core.read_clip(path, FRAMES, timeout=30)
    assert clip.info.codec == "mjpeg" and clip.warnings == []
    assert_exact(clip, fps=24)
    one = make_mjpeg(folder / f"mjpeg_one{suffix}", num_frames=1)  # a single JPEG in a video container
    with pytest.raises(stam_core.VideoNotAVideoError):
        stam_core.read_clip(one, FRAMES, timeout=30)


# ---- damaged streams ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def h264(folder):
    """10 s of H.264 at 24 fps, 2-s GOPs with B-frames."""
    return make_video(folder / "clean.mp4", num_frames=240, gop=48, bframes=3)


@pytest.mark.parametrize("name,kwargs", [
    ("clean.mp4", dict(num_frames=240, gop=48, bframes=3)),
    ("clean.mkv", dict(num_frames=240, gop=24)),
    ("clean.webm", dict(codec="vp9", num_frames=120)),
    ("clean_hevc.mkv", dict(codec="hevc", num_frames=120, bframes=3)),
    ("clean.ts", dict(num_frames=120, gop=24)),
    ("clean_vfr.mkv", dict(num_frames=60, vfr=True)),
    ("clean_vfr.mp4", dict(num_frames=60, vfr=True)),
])
def test_a_clean_file_has_no_warnings(folder, name, kwargs):
    clip = stam_core.read_clip(make_video(folder / name, **kwargs), FRAMES, timeout=30)
    assert clip.warnings == []


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("timeout", [None, 30])
def test_middle_quarter_overwritten(h264, folder, seed, timeout):
    # The rule (docs/decoding.md): corrupt when more than a quarter of the samples come from a
    # damaged stretch or from where frames are missing; otherwise warnings. Overwriting the
    # middle quarter of the bytes destroys 3.5 to 6.5 s of the 10: measured 7 of 16 samples.
    bad = overwrite(h264, folder / f"middle_{seed}.mp4", 3 / 8, 5 / 8, seed)
    try:
        clip = stam_core.read_clip(bad, FRAMES, timeout=timeout)
    except stam_core.VideoCorruptError as exc:
        assert exc.kind == "corrupt" and exc.source == str(bad)
        message = exc.reason
    else:
        assert clip.warnings
        message = "; ".join(clip.warnings)
    assert "undecodable packets between" in message
    first, last = (float(x) for x in message.split("between ")[1].split(" (")[0].replace(" s", "").split(" and "))
    assert 2.5 <= first < last <= 7.5


def test_light_damage_is_a_warning(h264, folder):
    bad = overwrite(h264, folder / "light.mp4", 0.50, 0.51)
    clip = stam_core.read_clip(bad, FRAMES, timeout=30)
    assert any("undecodable packet" in w for w in clip.warnings), clip.warnings
    assert len(clip.indices) == FRAMES


# ---- file names that are not UTF-8 --------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 30])
def test_non_utf8_local_path(folder, timeout):
    raw = os.fsencode(folder) + b"/caf\xe9.mp4"  # Latin-1 bytes: not valid UTF-8
    path = os.fsdecode(raw)  # a str holding a surrogate escape, as os.listdir returns it
    assert "\udce9" in path
    if not os.path.exists(raw):
        os.rename(make_video(folder / "latin1_source.mp4", num_frames=48), raw)
    clip = stam_core.read_clip(path, FRAMES, timeout=timeout)
    assert_exact(clip, fps=24)
    assert stam_core.probe_video(path, timeout=timeout).frame_count == 48
    decord = stam_core.read_clip(path, FRAMES, timeout=timeout, decoder="decord")
    assert decord.indices == clip.indices
    missing = os.fsdecode(os.fsencode(folder) + b"/gon\xe9.mp4")
    with pytest.raises(stam_core.VideoNotFoundError) as caught:
        stam_core.read_clip(missing, FRAMES, timeout=timeout)
    caught.value.source.encode("utf-8")  # the message is printable and storable
    assert caught.value.source.endswith("gon\\xe9.mp4")


# ---- a header that claims far more than the stream holds ----------------------------------
@pytest.mark.parametrize("timeout", [None, 30])
def test_a_header_claiming_24_hours_does_not_decide_the_duration(folder, timeout):
    path = make_false_duration_mkv(folder / "claims_24h.mkv")  # 16 frames at 8 fps: 2 s
    with av.open(str(path)) as container:  # FFmpeg itself believes the header
        assert container.duration / 1e6 == pytest.approx(86_400)
    info = stam_core.probe_video(path, timeout=timeout)
    assert info.claimed_duration_s == pytest.approx(86_400)
    assert info.duration_s == pytest.approx(2.0) and info.frame_count == 16
    # Cheap: a seek to the last keyframe and that GOP's packets (4), no decoding beyond the first frame.
    assert info.seeks <= 2 and info.packets_read <= 4 and info.frames_decoded == 1
    clip = stam_core.read_clip(path, FRAMES, timeout=timeout)
    assert_exact(clip, fps=8)
    assert sorted(set(clip.indices)) == list(range(16)) and max(clip.timestamps) < 2.0
    assert clip.info.duration_s == pytest.approx(2.0)
    assert clip.warnings == ["the container claims 86400.000 s but the stream ends at 2.000 s (shorter than claimed)"]
    with pytest.raises(stam_core.VideoError, match="outside the video"):
        stam_core.read_clip(path, FRAMES, start=2.0, end=2.5, timeout=timeout)


def test_an_honest_header_is_believed_without_a_seek(folder):
    path = make_video(folder / "honest.mkv", num_frames=48, fps=24, gop=12)
    info = stam_core.probe_video(path, timeout=None)
    assert info.claimed_duration_s is None and info.duration_s == pytest.approx(2.0)
    assert info.packets_read == 0  # no look at the tail: the index reaches the claim
