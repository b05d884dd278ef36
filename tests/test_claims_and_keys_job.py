"""Through the `stam-label` CLI: a header that claims 24 hours, and S3 keys with `./` and `//`
(issue 24). Real videos, the local S3 server, a real Ray head."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import VENV_BIN
from jobs.tools.samples import make_sample_video
from support.videogen import make_false_duration_mkv

CLAIM = "the container claims 86400.000 s but the stream ends at 2.000 s (shorter than claimed)"


def stam(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "stam-label"), *args], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy())


def current_rows(table: Path) -> list[dict]:
    from deltalake import DeltaTable, QueryBuilder

    sql = ("SELECT video_uri, segment_index, segment_start_s, segment_end_s, status, error, error_kind, duration_s, "
           "warnings, source_size, frame_timestamps FROM labels ORDER BY video_uri, segment_index")
    return pa.table(QueryBuilder().register("labels", DeltaTable(str(table))).execute(sql)).to_pylist()


def test_a_header_claiming_24_hours_makes_windows_only_where_frames_are(tmp_path, tiny_weights, ray_head):
    videos = tmp_path / "videos"
    videos.mkdir()
    fake = make_false_duration_mkv(videos / "claims_24h.mkv")  # 16 frames at 8 fps: 2 s
    out = tmp_path / "out"
    done = stam("run", str(videos), str(out), "--weights", str(tiny_weights), "--address", ray_head,
                "--window-seconds", "0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = current_rows(out)
    # 4 windows over the 2 s that exist and the video-level row, not 172,801 rows.
    assert [r["segment_index"] for r in rows] == [-1, 0, 1, 2, 3]
    video, *windows = rows
    assert all(r["status"] == "ok" and r["video_uri"] == str(fake) for r in rows)
    assert [(w["segment_start_s"], w["segment_end_s"]) for w in windows] == [(0, 0.5), (0.5, 1), (1, 1.5), (1.5, 2)]
    assert all(max(w["frame_timestamps"]) < 2.0 for w in windows)
    # Every row says the video is shorter than its header claims, and how long it really is.
    assert all(r["duration_s"] == pytest.approx(2.0) and r["warnings"] == [CLAIM] for r in rows)
    assert (video["segment_start_s"], video["segment_end_s"]) == (0, pytest.approx(2.0))

    # Over --max-windows: one error row of kind too_long, and the windows it had are gone.
    again = stam("run", str(videos), str(out), "--weights", str(tiny_weights), "--address", ray_head,
                 "--window-seconds", "0.5", "--max-windows", "3", "--relabel")
    assert again.returncode == 1, again.stderr[-3000:]  # every video failed
    (row,) = current_rows(out)
    assert (row["segment_index"], row["status"], row["error_kind"]) == (-1, "error", "too_long")
    assert row["error"] == (f"{fake}: 2.000 s in windows of 0.5 s every 0.5 s make more than 3 windows "
                            "(--max-windows)")


def test_s3_keys_with_dot_and_double_slash_are_read_exactly(local_s3, tmp_path, tiny_weights, ray_head):
    """Each odd key holds a video; the key a normalising client would read instead holds bytes
    that are not a video, so reading the wrong object cannot pass for reading the right one."""
    video = make_sample_video(tmp_path / "v.mp4", seed=3, seconds=2.0, fps=8, size=(96, 64))
    (tmp_path / "junk.mp4").write_bytes(b"not a video\n" * 50)
    local_s3.create_bucket("inb")
    for key in ("uni/./dot.mp4", "uni//double.mp4"):
        local_s3.upload(video, f"s3://inb/{key}")
    for key in ("uni/dot.mp4", "uni/double.mp4"):  # what `./` and `//` collapse to
        local_s3.upload(tmp_path / "junk.mp4", f"s3://inb/{key}")
    out = tmp_path / "out"
    done = stam("run", "s3://inb/uni/", str(out), "--weights", str(tiny_weights), "--address", ray_head,
                "--window-seconds", "1", "--max-error-rate", "1.0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = current_rows(out)
    by_key: dict[str, list[dict]] = {}
    for r in rows:
        by_key.setdefault(r["video_uri"], []).append(r)
    assert set(by_key) == {"s3://inb/uni/./dot.mp4", "s3://inb/uni//double.mp4", "s3://inb/uni/dot.mp4",
                           "s3://inb/uni/double.mp4"}
    size = video.stat().st_size
    for uri in ("s3://inb/uni/./dot.mp4", "s3://inb/uni//double.mp4"):
        # Listed, probed (two windows of a 2-s video), decoded and stored under the exact key.
        assert [(r["segment_index"], r["status"]) for r in by_key[uri]] == [(-1, "ok"), (0, "ok"), (1, "ok")], \
            by_key[uri]
        assert all(r["source_size"] == size for r in by_key[uri])
    for uri in ("s3://inb/uni/dot.mp4", "s3://inb/uni/double.mp4"):
        (junk,) = by_key[uri]
        assert junk["status"] == "error" and junk["error_kind"] == "format_error" and junk["error"].startswith(uri)
    requests = local_s3.request_log()
    assert "GET /inb/uni/./dot.mp4 " in requests and "GET /inb/uni//double.mp4 " in requests


def test_the_exact_key_reader(local_s3):
    import io

    import numpy as np

    import stam_core
    from jobs.stages.sources import open_video

    local_s3.create_bucket("exactkeys")
    s3 = local_s3.client()
    data = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    s3.put_object(Bucket="exactkeys", Key="a//b.mp4", Body=data)
    s3.put_object(Bucket="exactkeys", Key="a/b.mp4", Body=b"another object")
    uri = "s3://exactkeys/a//b.mp4"
    with open_video(uri) as f:
        assert isinstance(f, io.BufferedReader) and f.name == uri
        f.seek(2_500_000)
        assert f.read(100) == data[2_500_000:2_500_100]
        assert f.seek(0, io.SEEK_END) == len(data)
    # Replaced while it is read: the next ranged GET fails instead of mixing two objects.
    with open_video(uri) as f:
        f.read(10)
        s3.put_object(Bucket="exactkeys", Key="a//b.mp4", Body=data[::-1])
        f.seek(2_000_000)
        with pytest.raises(OSError, match="changed while it was read"):
            f.read(10)
    # Errors name the key as listed, not "<file object ...>".
    with pytest.raises(stam_core.VideoNotFoundError) as missing:
        with open_video("s3://exactkeys/a/./gone.mp4"):
            pass
    assert missing.value.source == "s3://exactkeys/a/./gone.mp4"
    s3.put_object(Bucket="exactkeys", Key="a/./junk.mp4", Body=b"not a video\n" * 100)
    with pytest.raises(stam_core.VideoFormatError) as junk:
        with open_video("s3://exactkeys/a/./junk.mp4") as source:
            stam_core.read_clip(source, timeout=30)
    assert junk.value.source == "s3://exactkeys/a/./junk.mp4" and str(junk.value).startswith("s3://exactkeys/a/./")
    # pyarrow would ask for another key (a/b.mp4 here): stam_core refuses rather than read it.
    with pytest.raises(ValueError, match="cannot read a key with an empty"):
        stam_core.read_clip(uri, timeout=None)
    # An ordinary key keeps the pyarrow path (the URI itself goes to the decoder).
    with open_video("s3://exactkeys/a/b.mp4") as source:
        assert source == "s3://exactkeys/a/b.mp4"
