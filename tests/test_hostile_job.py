"""Hostile input through the `stam-label` CLI: huge frames, pictures renamed .mp4, damaged
streams, a non-UTF-8 name, an S3 manifest naming local files; each one an honest row."""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import VENV_BIN
from jobs.table import LabelTable
from jobs.tools.samples import make_sample_video
from test_hostile_video import make_flat, overwrite
from support.videogen import make_video


def stam(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "stam-label"), *args], capture_output=True, text=True, timeout=600,
                          env=env or os.environ.copy())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_job")
    make_flat(root / "huge_8192.mp4", 8192, 8192)  # 8192x8192 > the 8K default: too_large from the header
    make_flat(root / "uhd_4k.mp4", 3840, 2160, num_frames=8)  # under the limit: decodes
    buf = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(buf, format="JPEG")
    (root / "photo.mp4").write_bytes(buf.getvalue())  # a JPEG renamed .mp4
    clean = make_video(root / "src_clean.h264.mp4", num_frames=240, gop=48, bframes=3)
    overwrite(clean, root / "damaged.mp4", 3 / 8, 5 / 8)  # the middle quarter overwritten
    clean.unlink()
    try:
        odd = os.fsencode(str(root)) + b"/caf\xe9.mp4"
        make_sample_video(Path(os.fsdecode(odd)), seed=1, seconds=1.0, fps=10, size=(96, 64))
    except (OSError, UnicodeError):
        pytest.skip("this filesystem refuses non-UTF-8 names")
    return root


def test_hostile_files_become_honest_rows(hostile, tmp_path, tiny_weights, ray_head):
    out = tmp_path / "out"
    done = stam("run", str(hostile), str(out), "--weights", str(tiny_weights), "--address", ray_head,
                "--max-error-rate", "1.0", "--batch-size", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["video_uri"]: r for r in LabelTable(str(out)).read_current().to_pylist()}
    by_name = {Path(u).name if not u.startswith("file://") else u.rsplit("/", 1)[1]: r for u, r in rows.items()}
    assert by_name["huge_8192.mp4"]["error_kind"] == "too_large" and "8192x8192" in by_name["huge_8192.mp4"]["error"]
    assert by_name["uhd_4k.mp4"]["status"] == "ok"
    assert by_name["photo.mp4"]["error_kind"] == "not_a_video"
    damaged = by_name["damaged.mp4"]
    assert damaged["error_kind"] == "corrupt" or damaged["warnings"], damaged
    # A non-UTF-8 name: labelled like any other, spelled file:// + percent-encoded bytes.
    assert by_name["caf%E9.mp4"]["status"] == "ok"
    assert by_name["caf%E9.mp4"]["video_uri"] == "file://" + str(hostile).replace("%", "%25") + "/caf%E9.mp4"
    # too_large depends on --max-pixels: a rerun with a larger limit tries it again.
    again = stam("run", str(hostile), str(out), "--weights", str(tiny_weights), "--address", ray_head,
                 "--max-error-rate", "1.0", "--max-pixels", str(8192 * 8192), "--dry-run")
    assert again.returncode == 0, again.stderr
    assert "huge_8192.mp4" in again.stdout and "uhd_4k.mp4" not in again.stdout


def test_an_s3_manifest_may_not_name_local_files(local_s3, tmp_path, tiny_weights, ray_head):
    video = make_sample_video(tmp_path / "local.mp4", seed=2, seconds=1.0, fps=10, size=(96, 64))
    local_s3.create_bucket("trust")
    local_s3.upload(video, "s3://trust/videos/remote.mp4")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"s3://trust/videos/remote.mp4\n{video}\n/etc/passwd\n")
    local_s3.upload(manifest, "s3://trust/manifests/list.txt")
    done = stam("run", "s3://trust/manifests/list.txt", "s3://trust/out", "--weights", str(tiny_weights),
                "--address", ray_head, "--max-error-rate", "1.0")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["video_uri"]: r for r in LabelTable("s3://trust/out").read_current().to_pylist()}
    assert rows["s3://trust/videos/remote.mp4"]["status"] == "ok"
    for local in (str(video), "/etc/passwd"):
        assert rows[local]["error_kind"] == "not_allowed" and "--allow-local-paths" in rows[local]["error"]
    record = json.loads(local_s3.client().get_object(
        Bucket="trust", Key=next(k["Key"] for k in local_s3.client().list_objects_v2(
            Bucket="trust", Prefix="out/_runs/")["Contents"] if k["Key"].endswith(".json")))["Body"].read())
    assert record["status"] == "completed" and record["counts"]["error"] == 2
