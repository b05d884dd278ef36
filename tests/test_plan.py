"""Planning: the anti-join with the current labels, --limit after skipping, --dry-run writes
nothing; the driver-side path (small plans) and Ray's distributed path agree."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import VENV_BIN

from jobs import plan as planning
from jobs.pipeline import JobConfig
from jobs.runs import plan_path
from jobs.schema import output_schema
from jobs.table import LabelTable


def labelled(uri, version, status="ok", kind=None, weights="w1", mode="video"):
    return {"video_uri": uri, "mode": mode, "segment_index": 0 if mode == "video" else -1, "status": status,
            "error_kind": kind, "source_version": version, "weights_sha256": weights, "run_id": "r0",
            "labelled_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}


@pytest.fixture
def case(tmp_path):
    """A manifest of 8 videos with versions, and a table that labelled some of them."""
    manifest = tmp_path / "m.parquet"
    uris = [f"s3://b/v{i}.mp4" for i in range(8)]
    pq.write_table(pa.table({"video_uri": uris, "size": [100] * 8, "source_version": ["1:1"] * 8}), manifest)
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    table.commit(pa.Table.from_pylist([
        labelled(uris[0], "1:1"),                                   # done: skipped
        labelled(uris[1], "0:9"),                                   # the file changed: relabelled
        labelled(uris[2], "1:1", "error", "timeout"),               # retryable: tried again
        labelled(uris[3], "1:1", "error", "format_error"),          # final for this version: skipped
        labelled(uris[4], "1:1", weights="w2"),                     # other weights: labelled
        labelled(uris[5], "1:1", mode="window=5,stride=5"),         # other mode: labelled
        labelled(uris[6], "1:1", "error", "too_large"),             # depends on options: tried again
    ], schema=output_schema()), run_id="r0", seq=1)
    config = JobConfig(str(manifest), str(tmp_path / "out"))
    return config, table, uris


@pytest.fixture
def ray_session(ray_head):
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_head, include_dashboard=False, log_to_driver=False)
    yield


def build(config: JobConfig, table: LabelTable, run_id: str):
    """The plan of ``config`` with weights w1 in video mode, persisted where the run's plan goes."""
    return planning.build(table, config.input_uri, extensions=config.extensions,
                          allow_local_paths=config.allow_local_paths, weights_sha256="w1", mode="video",
                          relabel=config.relabel, limit=config.limit, videos_per_task=config.videos_per_task,
                          path=plan_path(table, run_id))


@pytest.mark.parametrize("path", ["driver", "ray"])
def test_plan_skips_what_is_done_and_limits_after_skipping(path, case, ray_session, monkeypatch):
    config, table, uris = case
    if path == "ray":
        monkeypatch.setattr(planning, "LOCAL_PLAN_MAX_ROWS", 0)
    plan, work = build(config, table, "run1")
    expected = [uris[i] for i in (1, 2, 4, 5, 6, 7)]
    assert (plan.listed, plan.skipped, plan.total) == (8, 2, 6)
    assert sorted(r["video_uri"] for r in work.take_all()) == expected
    assert pq.read_table(plan.path, filesystem=table.fs).num_rows == 6  # persisted for reconciliation

    limited, work = build(replace(config, limit=2), table, "run2")
    assert (limited.skipped, limited.total) == (2, 2)  # --limit counts videos still to label
    assert sorted(r["video_uri"] for r in work.take_all()) == expected[:2]  # the first two in URI order
    relabel, _ = build(replace(config, relabel=True), table, "run3")
    assert (relabel.skipped, relabel.total) == (0, 8)


def test_dry_run_writes_nothing(tmp_path, tiny_weights, ray_head):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mp4", "a.mp4", "c.mkv"):
        (videos / name).write_bytes(b"not decoded in a dry run")
    out = tmp_path / "out"
    done = subprocess.run([str(VENV_BIN / "stam-label"), "run", str(videos), str(out), "--weights",
                           str(tiny_weights), "--address", ray_head, "--dry-run"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 videos listed, 0 already labelled, 3 to label" in done.stdout
    assert done.stdout.index(str(videos / "a.mp4")) < done.stdout.index(str(videos / "b.mp4"))
    assert not out.exists()  # no table, no run record, no plan
    assert not list(Path(tmp_path).glob("**/_runs"))


@pytest.mark.parametrize("path", ["driver", "ray"])
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_hostile_entries_mixed_with_good_files_plan(path, where, tmp_path, local_s3, ray_session, monkeypatch):
    """A folder named like a video (alone in its sub-tree, so its walk lists nothing), a dangling
    link and a non-UTF-8 name beside good files: every one is a listed row, none crashes the plan."""
    if path == "ray":
        monkeypatch.setattr(planning, "LOCAL_PLAN_MAX_ROWS", 0)
    if where == "folder":
        root = tmp_path / "in"
        (root / "dir.mp4").mkdir(parents=True)
        (root / "sub" / "empty.mkv").mkdir(parents=True)
        (root / "good.mp4").write_bytes(b"v")
        (root / "sub" / "good2.mp4").write_bytes(b"v")
        (root / "dangling.mp4").symlink_to(root / "nowhere.mp4")
        try:
            with open(os.path.join(os.fsencode(root), b"caf\xe9.mp4"), "wb") as f:
                f.write(b"v")
            expected = 6
        except OSError:  # a filesystem that refuses non-UTF-8 names
            expected = 5
        input_uri = str(root)
    else:
        bucket = f"p-{tmp_path.name.lower().replace('_', '-')}"[:60].rstrip("-")
        local_s3.create_bucket(bucket)
        client = local_s3.client()
        for key in ("in/good.mp4", "in/sub/good2.mp4", "in/dir.mp4/", "in/dir.mp4/notes.txt", "in/e.mkv/x.txt"):
            client.put_object(Bucket=bucket, Key=key, Body=b"v")
        input_uri, expected = f"s3://{bucket}/in/", 2
    table = LabelTable(str(tmp_path / "out"))
    plan, work = planning.build(table, input_uri, extensions=(".mp4", ".mkv"), allow_local_paths=False,
                                weights_sha256="w1", mode="video", relabel=False, limit=None,
                                videos_per_task=4, path=None)
    assert (plan.listed, plan.total) == (expected, expected)
    assert work is None  # a dry run's plan: no dataset, the first URIs only
    uris = plan.first
    assert uris == sorted(uris) and len(uris) == expected
    assert any(u.endswith("good.mp4") for u in uris)


def test_rerun_with_nothing_to_label_starts_no_ray(tmp_path, tiny_weights, ray_head):
    """A nightly rerun over a labelled folder lists it on the driver and never starts Ray."""
    from jobs.tools.samples import make_sample_video

    videos = tmp_path / "videos"
    videos.mkdir()
    make_sample_video(videos / "a.mp4", seed=1, seconds=1.0, fps=4, size=(64, 48))
    out = tmp_path / "out"
    # Weights as a relative path, from a folder that is not the Ray head's: the model actor,
    # in a worker with the head's working folder, must still find them.
    shutil.copy(tiny_weights, tmp_path / "w.pth")
    cmd = [str(VENV_BIN / "stam-label"), "run", str(videos), str(out), "--weights", "w.pth"]
    first = subprocess.run([*cmd, "--address", ray_head], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    again = subprocess.run([*cmd, "-v"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert "0 ok, 0 error, 1 skipped (of 1 listed)" in again.stdout
    assert "starting a local Ray head" not in again.stderr and "Ray" not in again.stderr, again.stderr
    assert took < 8, f"a rerun with nothing to label took {took:.1f} s"
    # A new video: now the run connects to Ray (the test's head: a run's own head is started
    # the same way, tests/test_cluster.py) and labels it.
    make_sample_video(videos / "b.mp4", seed=2, seconds=1.0, fps=4, size=(64, 48))
    third = subprocess.run([*cmd, "-v", "--address", ray_head], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "forwarding AWS settings to Ray workers" in third.stderr  # logged as it connects
    assert "1 ok, 0 error, 1 skipped (of 2 listed)" in third.stdout


def test_ray_is_not_imported_before_the_run_starts_its_head(tmp_path, tiny_weights):
    """The run's own head takes token authentication only if Ray was not imported before it
    starts (jobs/local_ray.py): nothing on the way to connect_ray may import Ray."""
    from jobs.tools.samples import make_sample_video

    videos = tmp_path / "videos"
    videos.mkdir()
    make_sample_video(videos / "a.mp4", seed=1, seconds=1.0, fps=4, size=(64, 48))
    script = f"""
import sys
from jobs import pipeline
from jobs.config import JobConfig

def connect(address):
    print("ray imported before connecting:", "ray" in sys.modules)
    raise SystemExit(0)

pipeline.connect_ray = connect
pipeline.run_job(JobConfig(input_uri={str(videos)!r}, output_uri={str(tmp_path / 'out')!r},
                           weights={str(tiny_weights)!r}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    done = subprocess.run([str(VENV_BIN / "python"), "-c", script], capture_output=True, text=True, timeout=120,
                          env=env)
    assert "ray imported before connecting: False" in done.stdout, done.stdout + done.stderr
