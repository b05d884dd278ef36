"""stam_core.read_clip / probe_video: exact frames, the sampling rule, orientation, cost,
bad input, the time limit, and every kind of source. Videos are generated (tests/support/videogen.py);
their frames carry their own index, so each test checks the pixels, not just the metadata."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # support/, also when run without conftest.py

import stam_core  # noqa: E402
from jobs.tools.samples import DEFAULT_SUFFIX  # noqa: E402
from stam_core.video import decode_worker  # noqa: E402
from support import decode_faults  # noqa: E402
from support.videogen import (  # noqa: E402
    VideoCache, decode_index, make_bad_inputs, make_video, official_transform, vfr_timestamps,
)

FRAMES = 16


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> VideoCache:
    """make(name, **make_video kwargs) -> path, each video encoded once per session."""
    return VideoCache(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def long_and_short(tmp_path_factory):
    """A 10-minute and a 10-second video, same size and encoding (10-s GOPs, no B-frames)."""
    folder = tmp_path_factory.mktemp("long")
    settings = dict(size=(160, 120), fps=12, gop=120, preset="ultrafast")
    return (make_video(folder / "ten_minutes.mp4", num_frames=12 * 600, **settings),
            make_video(folder / "ten_seconds.mp4", num_frames=12 * 10, **settings))


def read(source, num_frames=FRAMES, **kwargs) -> stam_core.Clip:
    kwargs.setdefault("timeout", None)
    return stam_core.read_clip(source, num_frames, **kwargs)


def assert_exact(clip: stam_core.Clip, fps: float | None = None, times: list[float] | None = None) -> None:
    """Each sample's pixels are the frame its index names, at the time it names."""
    assert clip.frames.shape == (len(clip.indices), 224, 224, 3) and clip.frames.dtype == np.uint8
    assert [decode_index(frame) for frame in clip.frames] == list(clip.indices)
    if fps is not None:
        assert clip.timestamps == pytest.approx([i / fps for i in clip.indices], abs=1e-3)
    if times is not None:
        assert clip.timestamps == pytest.approx([times[i] for i in clip.indices], abs=1e-3)


def assert_rule(clip: stam_core.Clip, start: float = 0.0, end: float | None = None,
                frame_times: list[float] | None = None) -> None:
    """|t_i - centre_i| <= duration / (4 n), wherever that middle half holds a frame at all."""
    n = len(clip.indices)
    end = clip.info.duration_s if end is None else end
    seg = (end - start) / n
    for i, t in enumerate(clip.timestamps):
        centre = start + (i + 0.5) * seg
        if frame_times is not None and not any(abs(f - centre) <= seg / 4 for f in frame_times):
            continue  # no frame there: the rule cannot hold; the frame on screen is taken
        assert abs(t - centre) <= seg / 4 + 1e-3, (i, t, centre)


# ---- exact frames and the sampling rule ---------------------------------------------------

@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "av1", "mpeg4", "vp8"])
def test_exact_frames_each_codec(videos, codec):
    # 6 s at 24 fps: dense enough that non-reference frames between samples are skipped.
    path = videos(f"exact_{codec}{DEFAULT_SUFFIX[codec]}", codec=codec, num_frames=144, gop=48)
    clip = read(path)
    assert_exact(clip, fps=24)
    assert_rule(clip)
    info = clip.info
    assert (info.width, info.height, info.rotation, info.decoder) == (320, 240, 0, "pyav")
    assert info.duration_s == pytest.approx(6.0, abs=0.05) and info.fps == pytest.approx(24)
    assert info.frame_count == 144 and not info.repeated
    assert info.frames_decoded < 144
    assert info.codec in {"h264": ["h264"], "hevc": ["hevc"], "vp9": ["vp9", "libvpx-vp9"],
                          "av1": ["libdav1d", "av1"], "mpeg4": ["mpeg4"], "vp8": ["vp8", "libvpx"]}[codec]


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_decord_exact_where_it_decodes_correctly(videos, codec):
    # decord returns wrong frames for B-frame HEVC/MPEG-4 and has no AV1: docs/decoding.md.
    path = videos(f"exact_{codec}{DEFAULT_SUFFIX[codec]}", codec=codec, num_frames=144, gop=48)
    clip = read(path, decoder="decord")
    assert clip.info.decoder == "decord"
    assert_exact(clip, fps=24)
    assert_rule(clip)


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_sampling_rule_with_b_frames(videos, decoder):
    path = videos("bframes.mp4", num_frames=240, bframes=3, gop=48)  # 10 s
    clip = read(path, decoder=decoder)
    assert_exact(clip, fps=24)
    assert_rule(clip)
    assert len(set(clip.indices)) == FRAMES


def test_same_samples_every_time_and_through_the_worker(videos):
    path = videos("bframes.mp4", num_frames=240, bframes=3, gop=48)
    first, again, worker = read(path), read(path), read(path, timeout=30)
    assert first.indices == again.indices == worker.indices
    assert np.array_equal(first.frames, worker.frames)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "h264"), (".mkv", "h264"), (".webm", "vp9")])
def test_variable_frame_rate(videos, suffix, codec):
    path = videos(f"vfr{suffix}", codec=codec, vfr=True, num_frames=60)
    times = vfr_timestamps(60, 24)
    clip = read(path)
    assert_exact(clip, times=times)
    assert_rule(clip, frame_times=times)
    assert clip.info.frame_count == 60


def test_variable_frame_rate_decord(videos):
    path = videos("vfr.mp4", codec="h264", vfr=True, num_frames=60)
    times = vfr_timestamps(60, 24)
    clip = read(path, decoder="decord")
    assert_exact(clip, times=times)
    assert_rule(clip, frame_times=times)


@pytest.mark.parametrize("name,codec,vfr", [
    ("plain.ts", "h264", False),
    ("vfr.ts", "h264", True),
    ("bframes.avi", "mpeg4", False),  # AVI's made-up B-frame times start one frame late
])
def test_containers_without_an_index(videos, name, codec, vfr):
    # Decoded in one forward pass; positions from the frame rate, or counted when it varies.
    path = videos(name, codec=codec, vfr=vfr, num_frames=120, gop=24)
    clip = read(path)
    times = vfr_timestamps(120, 24) if vfr else [k / 24 for k in range(120)]
    assert_exact(clip, times=times)
    assert_rule(clip, frame_times=times)
    assert clip.info.seeks == 0


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("suffix,codec,decoder", [
    (".mp4", "h264", "pyav"), (".mkv", "hevc", "pyav"), (".webm", "vp9", "pyav"),
    (".mp4", "h264", "decord"),  # decord turns MP4s itself...
    (".webm", "vp9", "decord"),  # ...but ignores Matroska/WebM rotation: we turn those
])
def test_rotation(videos, rotation, suffix, codec, decoder):
    path = videos(f"rot{rotation}{suffix}", codec=codec, rotation=rotation, size=(320, 240), num_frames=24)
    clip = read(path, decoder=decoder)
    assert_exact(clip, fps=24)  # decode_index rejects turned or mirrored frames
    assert clip.info.rotation == rotation and not clip.info.flipped
    assert (clip.info.width, clip.info.height) == (320, 240)


@pytest.mark.parametrize("name,codec,size", [
    ("odd.mp4", "h264", (321, 241)),  # 4:4:4: x264 refuses odd sizes in 4:2:0
    ("odd.webm", "vp9", (321, 241)),
    ("portrait.mp4", "h264", (240, 320)),
    ("tall.webm", "vp9", (120, 400)),
])
def test_odd_and_portrait_sizes(videos, name, codec, size):
    clip = read(videos(name, codec=codec, size=size, num_frames=24))
    assert_exact(clip, fps=24)
    assert (clip.info.width, clip.info.height) == size


def test_single_frame_video_repeats_it(videos):
    clip = read(videos("one.mp4", num_frames=1))
    assert clip.indices == [0] * FRAMES and clip.info.repeated
    assert_exact(clip)


@pytest.mark.parametrize("name,codec", [("five.mp4", "h264"), ("five.webm", "vp9")])
def test_fewer_frames_than_samples(videos, name, codec):
    clip = read(videos(name, codec=codec, num_frames=5))
    assert_exact(clip, fps=24)
    assert clip.info.repeated
    assert clip.indices == sorted(clip.indices) and set(clip.indices) == set(range(5))


@pytest.mark.parametrize("start,end", [(2.0, 6.0), (9.0, None), (0.0, 0.5), (7.3, 100.0)])
def test_windows(videos, start, end):
    path = videos("window.mp4", num_frames=240, gop=24)  # 10 s at 24 fps
    clip = read(path, start=start, end=end)
    assert_exact(clip, fps=24)
    stop = min(end or 10.0, 10.0)
    assert_rule(clip, start, stop, frame_times=[k / 24 for k in range(240)])  # (0, 0.5) holds 12 frames
    assert all(start - 1e-6 <= t < stop for t in clip.timestamps)


def test_window_outside_the_video(videos):
    path = videos("window.mp4", num_frames=240, gop=24)
    with pytest.raises(stam_core.VideoError, match="outside the video"):
        read(path, start=12.0)
    with pytest.raises(ValueError):
        read(path, start=3.0, end=2.0)


# ---- cost: counted, never timed ------------------------------------------------------------

class CountingFile(io.FileIO):
    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_long_video_costs_at_most_twice_a_short_one(long_and_short):
    long, short = long_and_short
    long_clip, short_clip = read(long), read(short)
    assert_exact(long_clip, fps=12)
    assert_exact(short_clip, fps=12)
    assert_rule(long_clip)
    assert long_clip.info.duration_s == pytest.approx(600)
    assert long_clip.info.frames_decoded <= 2 * short_clip.info.frames_decoded
    assert long_clip.info.packets_read <= 2 * short_clip.info.packets_read
    # Seeks through the index: only a small part of the long file is read.
    with CountingFile(long) as f:
        stam_core.read_clip(f, FRAMES, timeout=None)
        assert f.bytes_read < 0.5 * long.stat().st_size


def test_non_reference_frames_are_skipped(videos):
    path = videos("bframes.mp4", num_frames=240, bframes=3, gop=48)
    clip = read(path)
    assert clip.info.frames_decoded < 0.9 * 240
    assert clip.info.seeks <= 6  # forward through the GOPs, not back and forth


def test_probe_reads_metadata_only(long_and_short, videos):
    long, _ = long_and_short
    info = stam_core.probe_video(long, timeout=None)
    assert info.duration_s == pytest.approx(600) and info.frame_count == 7200 and info.fps == pytest.approx(12)
    assert (info.width, info.height, info.codec) == (160, 120, "h264")
    assert info.frames_decoded <= 1
    rotated = stam_core.probe_video(videos("rot90.mp4", codec="h264", rotation=90, size=(320, 240), num_frames=24))
    assert (rotated.rotation, rotated.width, rotated.height) == (90, 320, 240)


# ---- the transform ------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(640, 272), (272, 480)])
@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_transform_matches_the_official_one(videos, size, decoder):
    path = videos(f"real_{size[0]}x{size[1]}.mp4", size=size, num_frames=50, fps=25, pattern=False, grain=6)
    clip = read(path, decoder=decoder)
    with av.open(str(path)) as container:
        everything = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    for frame, index in zip(clip.frames, clip.indices):
        mad = np.abs(frame.astype(np.int16) - official_transform(everything[index])).mean()
        assert mad <= 1.5, (index, mad)


# ---- bad input ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind,error", [
    ("empty", stam_core.VideoFormatError),
    ("not_video", stam_core.VideoFormatError),
    ("text", stam_core.VideoFormatError),
    ("audio_only", stam_core.VideoFormatError),
    ("truncated_mp4", stam_core.VideoFormatError),
    ("unsupported_codec", stam_core.VideoFormatError),
    ("corrupt_frames", stam_core.VideoFormatError),
])
@pytest.mark.parametrize("timeout", [None, 30])
def test_bad_input_raises_a_video_error(bad_inputs, kind, error, timeout):
    path = bad_inputs[kind]
    with pytest.raises(error) as caught:
        stam_core.read_clip(path, FRAMES, timeout=timeout)
    assert str(path) in str(caught.value) and caught.value.source == str(path)
    assert caught.value.reason


@pytest.mark.parametrize("timeout,decoder", [(None, "pyav"), (30, "pyav"), (None, "decord")])
def test_matroska_missing_its_tail_is_read_up_to_where_it_ends(bad_inputs, timeout, decoder):
    # The header promises 4 s, the data stops after about a third: the frames that are there
    # are sampled, and the clip says the video is shorter than its container claims.
    clip = stam_core.read_clip(bad_inputs["truncated_mkv"], FRAMES, timeout=timeout, decoder=decoder)
    assert clip.info.claimed_duration_s == pytest.approx(4.0)
    assert 0.5 < clip.info.duration_s < 2.0
    assert max(clip.timestamps) < clip.info.duration_s
    assert clip.warnings == [f"the container claims 4.000 s but the stream ends at {clip.info.duration_s:.3f} s "
                             "(shorter than claimed)"]


@pytest.mark.parametrize("kind", ["corrupt_frames", "audio_only"])
def test_bad_input_with_decord(bad_inputs, kind):
    with pytest.raises(stam_core.VideoError, match=str(bad_inputs[kind])):
        read(bad_inputs[kind], decoder="decord")


def test_missing_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    for timeout in (None, 30):
        with pytest.raises(stam_core.VideoNotFoundError, match="missing.mp4"):
            stam_core.read_clip(missing, timeout=timeout)
    with pytest.raises(stam_core.VideoNotFoundError):
        stam_core.probe_video(missing)


def test_bad_arguments(videos):
    path = videos("exact_h264.mp4", codec="h264", num_frames=144, gop=48)
    with pytest.raises(ValueError):
        read(path, num_frames=0)
    with pytest.raises(ValueError):
        read(path, decoder="opencv")
    with pytest.raises(TypeError):
        stam_core.read_clip(12345)


# ---- the worker process and its time limit -------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_worker_is_reused(videos):
    path = videos("exact_h264.mp4", codec="h264", num_frames=144, gop=48)
    stam_core.read_clip(path, timeout=30)
    pid = decode_worker.worker_pid()
    stam_core.probe_video(path, timeout=30)
    stam_core.read_clip(path, timeout=30)
    assert decode_worker.worker_pid() == pid


@pytest.fixture()
def decode_fault(tmp_path):
    """set_fault("hang" | "crash" | None): the decode worker misbehaves from the next call on."""
    with decode_faults.injected(tmp_path) as set_fault:
        yield set_fault


def test_hanging_decoder_is_killed(videos, decode_fault):
    path = videos("exact_h264.mp4", codec="h264", num_frames=144, gop=48)
    stam_core.read_clip(path, timeout=30)
    pid = decode_worker.worker_pid()
    # The worker spins in C holding the GIL: only killing the process can stop it.
    decode_fault("hang")
    with pytest.raises(stam_core.VideoTimeoutError, match="exact_h264.mp4"):
        stam_core.read_clip(path, timeout=1.0)
    assert not _alive(pid)
    decode_fault(None)
    assert_exact(stam_core.read_clip(path, timeout=30), fps=24)  # a fresh worker
    assert decode_worker.worker_pid() != pid


def test_crashing_decoder(videos, decode_fault):
    path = videos("exact_h264.mp4", codec="h264", num_frames=144, gop=48)
    decode_fault("crash")
    with pytest.raises(stam_core.VideoDecoderCrash, match="SIGSEGV"):
        stam_core.read_clip(path, timeout=30)
    decode_fault(None)
    assert_exact(stam_core.read_clip(path, timeout=30), fps=24)


def test_importing_the_decoder_does_not_import_torch():
    code = ("import sys, stam_core.video, stam_core.video.decode_worker, stam_core.video.decode_child; "
            "print(sorted(m for m in ('torch', 'ray', 'boto3', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- sources ------------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 30])
def test_bytes_and_file_object_sources(videos, timeout):
    path = videos("bframes.mp4", num_frames=240, bframes=3, gop=48)
    expected = read(path)
    from_bytes = stam_core.read_clip(path.read_bytes(), FRAMES, timeout=timeout)
    with open(path, "rb") as f:
        from_file = stam_core.read_clip(f, FRAMES, timeout=timeout)
    for clip in (from_bytes, from_file):
        assert clip.indices == expected.indices and np.array_equal(clip.frames, expected.frames)


def test_file_object_is_read_in_ranges_through_the_worker(long_and_short):
    long, _ = long_and_short
    with CountingFile(long) as f:
        clip = stam_core.read_clip(f, FRAMES, timeout=30)
        assert f.bytes_read < 0.5 * long.stat().st_size
    assert_exact(clip, fps=12)


def test_pyarrow_filesystem_keyword(videos):
    import pyarrow.fs as pafs

    path = videos("exact_h264.mp4", codec="h264", num_frames=144, gop=48)
    clip = stam_core.read_clip(str(path), FRAMES, timeout=30, filesystem=pafs.LocalFileSystem())
    assert_exact(clip, fps=24)


def test_s3_source(local_s3, videos):
    path = videos("bframes.mp4", num_frames=240, bframes=3, gop=48)
    local_s3.create_bucket("videos")
    local_s3.upload(path, "s3://videos/clips/b.mp4")
    expected = read(path)
    for timeout in (None, 30):
        clip = stam_core.read_clip("s3://videos/clips/b.mp4", FRAMES, timeout=timeout)
        assert clip.indices == expected.indices and np.array_equal(clip.frames, expected.frames)
    assert stam_core.probe_video("s3://videos/clips/b.mp4").frame_count == 240
    with pytest.raises(stam_core.VideoNotFoundError, match="s3://videos/clips/missing.mp4"):
        stam_core.read_clip("s3://videos/clips/missing.mp4", FRAMES)
