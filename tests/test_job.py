"""The labelling job end to end: real videos, a real S3 server, a real Ray head."""
from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from conftest import VENV_BIN
from conftest import job_config as config
from support.videogen import make_audio_only

import stam_core.model
from jobs.pipeline import run_job
from jobs.schema import output_schema, with_flat_columns
from jobs.table import LabelTable
from jobs.tools.samples import make_sample_video

GOOD = ("a.mp4", "b.mp4", "sub/c.mp4")
BAD = {"empty.mp4": "format_error", "truncated.mp4": "format_error", "notes.mp4": "format_error",
       "audio_only.mp4": "format_error"}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    for i, name in enumerate(GOOD):
        make_sample_video(root / name, seed=i, seconds=2.0, fps=10, size=(160, 120))
    (root / "empty.mp4").write_bytes(b"")
    good = (root / "a.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 4])
    (root / "notes.mp4").write_text("not a video at all")
    make_audio_only(root / "audio_only.mp4")
    (root / "readme.txt").write_text("ignored: not a video extension")
    return root


def names(table) -> Counter:
    return Counter(Path(u).name for u in table.column("video_uri").to_pylist())


def test_local_folder_end_to_end(video_dir, tmp_path, tiny_weights, ray_head):
    out = tmp_path / "labels"
    summary = run_job(config(tiny_weights, video_dir, out, ray_head))
    assert (summary.listed, summary.ok, summary.error, summary.skipped) == (7, 3, 4, 0)

    table = LabelTable(str(out)).read_current()
    assert names(table) == Counter({Path(n).name: 1 for n in list(GOOD) + list(BAD)})
    # The rows' schema, plus the review columns every table has (jobs.schema.with_flat_columns).
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in with_flat_columns(output_schema())]
    rows = {Path(r["video_uri"]).name: r for r in table.to_pylist()}
    for name in GOOD:
        row = rows[Path(name).name]
        assert row["status"] == "ok" and row["error"] is None and row["warnings"] is None
        assert row["label"] == row["labels"][0] and row["score"] == row["scores"][0]
        assert len(row["labels"]) == 5 and set(row["labels"]) <= set(stam_core.KINETICS400_CLASSES)
        assert row["scores"] == sorted(row["scores"], reverse=True) and 0 < sum(row["scores"]) <= 1.0001
        assert [stam_core.KINETICS400_CLASSES[i] for i in row["class_ids"]] == row["labels"]
        assert len(row["frame_indices"]) == 8 and row["frame_indices"] == sorted(row["frame_indices"])
        assert row["duration_s"] == pytest.approx(2.0, abs=0.2) and (row["width"], row["height"]) == (160, 120)
        assert row["segment_start_s"] == 0 and row["segment_end_s"] == row["duration_s"]
        assert row["weights_sha256"] == stam_core.file_sha256(tiny_weights)
        assert row["run_id"] == summary.run_id and row["source_version"]
        assert row["model"] == "stam_tiny"  # the name save_checkpoint stored, not a guess from the frame count
    for name, kind in BAD.items():
        row = rows[name]
        assert row["status"] == "error" and row["error_kind"] == kind, row
        assert name in row["error"] and row["labels"] is None

    manifest = json.loads((out / "_runs" / f"{summary.run_id}.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["counts"] == {"listed": 7, "skipped": 0, "to_label": 7, "ok": 3, "error": 4, "rows": 7,
                                  "lost": 0, "commits": 1, "rows_rewritten": 0}
    assert set(manifest["timings"]) == {"plan_s", "commit_s", "wall_s"} and manifest["timings"]["commit_s"] > 0
    assert manifest["timings"]["plan_s"] + manifest["timings"]["commit_s"] < manifest["timings"]["wall_s"]
    assert manifest["weights_sha256"] == row["weights_sha256"]


def test_rerun_adds_no_rows_and_changed_video_is_relabelled(video_dir, tmp_path, tiny_weights, ray_head):
    out = tmp_path / "labels"
    cfg = config(tiny_weights, video_dir, out, ray_head)
    run_job(cfg)
    again = run_job(cfg)
    assert (again.skipped, again.ok, again.error, again.rows) == (7, 0, 0, 0)
    assert LabelTable(str(out)).read_current().num_rows == 7

    # A changed file (new size and mtime) is labelled again; the table still has one current row.
    make_sample_video(video_dir / "a.mp4", seed=9, seconds=2.5, fps=10, size=(160, 120))
    third = run_job(cfg)
    assert (third.ok, third.skipped) == (1, 6)
    current = LabelTable(str(out)).read_current()
    assert names(current) == Counter({Path(n).name: 1 for n in list(GOOD) + list(BAD)})
    assert current.filter(pads.field("video_uri").isin([str(video_dir / "a.mp4")])) \
        .column("run_id").to_pylist() == [third.run_id]
    # --relabel labels everything again, and the table still has one current row per video.
    fourth = run_job(config(tiny_weights, video_dir, out, ray_head, relabel=True))
    assert fourth.ok + fourth.error == 7
    assert LabelTable(str(out)).read_current().num_rows == 7
    # --limit takes the first N still to label (URI order), so a backlog goes in slices.
    sliced = tmp_path / "sliced"
    first = run_job(config(tiny_weights, video_dir, sliced, ray_head, limit=3))
    second = run_job(config(tiny_weights, video_dir, sliced, ray_head, limit=3))
    assert (first.processed, second.processed, second.skipped) == (3, 3, 3)
    labelled = sorted(LabelTable(str(sliced)).read_current(["video_uri"])["video_uri"].to_pylist())
    assert len(labelled) == 6 and labelled == sorted(str(p) for p in video_dir.rglob("*.mp4"))[:6]


def test_s3_to_s3_with_manifest(video_dir, local_s3, tiny_weights, ray_head, tmp_path):
    local_s3.create_bucket("archive")
    for name in GOOD + ("notes.mp4",):
        local_s3.upload(video_dir / name, f"s3://archive/videos/{name}")
    summary = run_job(config(tiny_weights, "s3://archive/videos", "s3://archive/labels", ray_head))
    assert (summary.ok, summary.error) == (3, 1)
    table = LabelTable("s3://archive/labels").read_current()
    assert sorted(table.column("video_uri").to_pylist()) == sorted(f"s3://archive/videos/{n}" for n in GOOD + ("notes.mp4",))

    manifest = tmp_path / "list.txt"
    manifest.write_text("s3://archive/videos/a.mp4\ns3://archive/videos/missing.mp4\n")
    summary = run_job(config(tiny_weights, manifest, "s3://archive/labels2", ray_head))
    rows = {r["video_uri"]: r for r in LabelTable("s3://archive/labels2").read_current().to_pylist()}
    assert rows["s3://archive/videos/a.mp4"]["status"] == "ok"
    missing = rows["s3://archive/videos/missing.mp4"]
    assert missing["status"] == "error" and missing["error_kind"] == "not_found"
    assert "missing.mp4" in missing["error"] and "testing" not in missing["error"]  # no credentials


def test_csv_manifest_relative_paths(video_dir, tmp_path, tiny_weights, ray_head):
    manifest = video_dir / "m.csv"
    manifest.write_text("video_uri,other\na.mp4,x\nsub/c.mp4,y\n")
    summary = run_job(config(tiny_weights, manifest, tmp_path / "out", ray_head))
    assert (summary.listed, summary.ok) == (2, 2)


def cli(*args, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "stam-label"), *args], env=env or os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_cli_exit_codes(video_dir, tmp_path, tiny_weights, ray_head):
    missing_weights = cli("run", str(video_dir), str(tmp_path / "o"), "--weights", str(tmp_path / "nope.pth"),
                          "--address", ray_head)
    output, _ = missing_weights.communicate(timeout=120)
    assert missing_weights.returncode == 3 and "nope.pth" in output

    missing_input = cli("run", str(tmp_path / "absent"), str(tmp_path / "o"), "--weights", str(tiny_weights))
    output, _ = missing_input.communicate(timeout=120)
    assert missing_input.returncode == 3 and "absent" in output and "does not exist" in output

    too_many_errors = cli("run", str(video_dir), str(tmp_path / "o2"), "--weights", str(tiny_weights),
                          "--address", ray_head, "--max-error-rate", "0.1")
    output, _ = too_many_errors.communicate(timeout=300)
    assert too_many_errors.returncode == 1 and "max-error-rate" in output
    assert "4 error" in output and "error rate: 57.1%" in output  # committed and summarised

    # Every video failing is a failed run, whatever --max-error-rate says.
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    for name in BAD:
        (bad_only / name).write_bytes((video_dir / name).read_bytes())
    all_failed = cli("run", str(bad_only), str(tmp_path / "o3"), "--weights", str(tiny_weights),
                     "--address", ray_head, "--max-error-rate", "1.0")
    output, _ = all_failed.communicate(timeout=300)
    assert all_failed.returncode == 1, output


def test_window_mode_embeddings_and_probs(video_dir, tmp_path, tiny_weights, ray_head):
    videos = tmp_path / "long"
    videos.mkdir()
    make_sample_video(videos / "ten.mp4", seed=3, seconds=10.0, fps=5, size=(96, 64))
    (videos / "bad.mp4").write_text("nope")
    out = tmp_path / "out"
    summary = run_job(config(tiny_weights, videos, out, ray_head, window_s=4.0, embeddings=True, probs=True))
    assert (summary.ok, summary.error) == (1, 1)
    table = LabelTable(str(out)).read_current()
    rows = sorted(table.to_pylist(), key=lambda r: (r["video_uri"], r["segment_index"]))
    bad, *ten = rows
    assert bad["segment_index"] == -1 and bad["status"] == "error" and "bad.mp4" in bad["error"]
    assert [(r["segment_index"], r["segment_start_s"], r["segment_end_s"]) for r in ten] == [
        (-1, 0.0, pytest.approx(10.0, abs=0.3)), (0, 0.0, 4.0), (1, 4.0, 8.0), (2, 8.0, pytest.approx(10.0, abs=0.3))]
    assert all(r["mode"] == "window=4,stride=4" for r in rows)
    video, *windows = ten
    for w in windows:  # each window sampled inside its own bounds
        assert all(w["segment_start_s"] - 0.01 <= t <= w["segment_end_s"] + 0.01 for t in w["frame_timestamps"])
        assert len(w["embedding"]) == 96 and len(w["probs"]) == 400
    mean = np.mean([w["probs"] for w in windows], axis=0)
    assert video["labels"][0] == stam_core.KINETICS400_CLASSES[int(mean.argmax())]
    assert video["scores"][0] == pytest.approx(float(mean.max()), rel=1e-5)
    # Windowed labels are a different mode: a whole-video run over the same output labels again.
    again = run_job(config(tiny_weights, videos, out, ray_head))
    assert again.skipped == 0


SECRET = "s3cr3t-Value-that-must-not-leak"
TOKEN = "T0ken-Value-that-must-not-leak"
KEY_ID = "AKIAEXAMPLEKEYID0000"
SIGNATURE = "5ignature-that-must-not-leak"


def files_containing(root: Path, *markers: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_socket():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {m}" for m in markers if m.encode() in data]
    return hits


@pytest.fixture(scope="module")
def weights_server(tiny_weights):
    """The tiny checkpoint over HTTP, so --weights can be a presigned-looking URL."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_weights.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{tiny_weights.name}"
    server.shutdown()


@pytest.mark.parametrize("where", ["cluster", "local"])
def test_secrets_never_leave_the_process(where, video_dir, local_s3, weights_server, ray_head, tmp_path):
    """Marker credentials and a presigned weights URL: absent from stderr/stdout, the table, the
    run record and every file under Ray's temp dir (the joined head's, or a local Ray's)."""
    import tempfile

    from conftest import RAY_HEAD

    bucket = f"secretive-{where}"
    local_s3.create_bucket(bucket)
    local_s3.upload(video_dir / "a.mp4", f"s3://{bucket}/in/a.mp4")
    local_s3.upload(video_dir / "notes.mp4", f"s3://{bucket}/in/notes.mp4")
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SESSION_TOKEN": TOKEN,
           "STAM_CACHE": str(tmp_path / "cache")}
    weights = f"{weights_server}?X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token={TOKEN}"
    args = ["-v", "run", f"s3://{bucket}/in", f"s3://{bucket}/out", "--weights", weights]
    if where == "cluster":
        args += ["--address", ray_head]
        ray_dir = RAY_HEAD["temp_dir"]
    else:
        ray_dir = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths
        env.pop("RAY_ADDRESS", None)
        env["RAY_TMPDIR"] = str(ray_dir)
    proc = cli(*args, env=env)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "1 ok, 1 error" in output
    client = local_s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]]
    records = [k for k in keys if k.startswith("out/_runs/") and k.endswith(".json")]
    assert len(records) == 1 and any(k.endswith(".parquet") for k in keys)
    record = client.get_object(Bucket=bucket, Key=records[0])["Body"].read().decode()
    assert json.loads(record)["config"]["weights"] == weights_server  # redacted, still useful
    table = LabelTable(f"s3://{bucket}/out").read_current().to_pandas().to_json()
    markers = (SECRET, TOKEN, KEY_ID, SIGNATURE)
    for text in (output, record, table):
        assert not [m for m in markers if m in text]
    assert not files_containing(Path(ray_dir), *markers)
    assert not files_containing(tmp_path / "cache", SIGNATURE, TOKEN)


def test_custom_class_list(video_dir, tmp_path, ray_head):
    import torch

    from jobs.pipeline import JobError

    torch.manual_seed(1)
    weights = stam_core.model.save_checkpoint(stam_core.model.create_model("stam_tiny", num_classes=3),
                                              tmp_path / "three.pth")
    labels = tmp_path / "labels.txt"
    labels.write_text("pouring\nstirring\nwhisking\n")
    summary = run_job(config(weights, video_dir / "sub", tmp_path / "out", ray_head, labels_file=str(labels)))
    assert summary.ok == 1
    (row,) = LabelTable(str(tmp_path / "out")).read_current().to_pylist()
    assert sorted(row["labels"]) == ["pouring", "stirring", "whisking"]  # top-5 capped at 3 classes

    labels.write_text("pouring\nstirring\n")
    with pytest.raises(JobError, match="2 class names but the checkpoint has 3 classes"):
        run_job(config(weights, video_dir / "sub", tmp_path / "out2", ray_head, labels_file=str(labels)))


def test_decoding_runs_below_the_model_priority(tmp_path):
    """Decode tasks lower their priority once (not cumulatively), and read_clip's decode worker inherits it."""
    video = make_sample_video(tmp_path / "v.mp4", seed=0, seconds=1.0)
    code = (
        "import os, sys\n"
        "from jobs.stages.priority import DECODE_NICENESS, lower_priority\n"
        "from stam_core.video import decode_worker, read_clip\n"
        "lower_priority(); lower_priority()\n"
        "read_clip(sys.argv[1], 4, timeout=60)\n"
        "print(DECODE_NICENESS, os.getpriority(os.PRIO_PROCESS, 0),"
        " os.getpriority(os.PRIO_PROCESS, decode_worker.worker_pid()))\n"
    )
    out = subprocess.run([str(VENV_BIN / "python"), "-c", code, str(video)], cwd=Path(__file__).parents[1],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    niceness, own, worker = map(int, out.stdout.split())
    assert niceness > 0
    assert own == worker == max(niceness, os.getpriority(os.PRIO_PROCESS, 0))  # never raised, never stacked
