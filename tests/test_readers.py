"""The label table as users read it (pandas, polars, DuckDB, Ray Data), export to stdout, and
the migration of the first layout: real job output, readers in fresh processes, exit codes."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import VENV_BIN
from conftest import job_config as config
from jobs.pipeline import run_job
from jobs.table import LabelTable
from jobs.tools.samples import make_sample_video

# The README's snippets, one per reader; each prints the number of current rows.
READERS = {
    "pandas": """
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
labels = DeltaTable(PATH)
sql = "SELECT video_uri, segment_index, label, score, status, error_kind FROM labels"
df = pa.table(QueryBuilder().register("labels", labels).execute(sql)).to_pandas()
print(len(df))
""",
    "polars": """
import polars as pl
print(pl.read_delta(PATH).height)
""",
    "duckdb": """
import duckdb
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
labels = pa.table(QueryBuilder().register("labels", DeltaTable(PATH)).execute("SELECT * FROM labels"))
print(duckdb.sql("SELECT count(*) FROM labels WHERE segment_index IN (0, -1)").fetchall()[0][0])
""",
    "ray": """
import ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.data.read_delta(PATH).count())
""",
}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_weights, ray_head) -> Path:
    root = tmp_path_factory.mktemp("readers")
    videos = root / "videos"
    videos.mkdir()
    for i in range(3):
        make_sample_video(videos / f"v{i}.mp4", seed=i, seconds=1.0, fps=10, size=(96, 64))
    (videos / "bad.mp4").write_text("not a video")
    summary = run_job(config(tiny_weights, videos, root / "out", ray_head))
    assert (summary.ok, summary.error) == (3, 1)
    return root / "out"


@pytest.mark.parametrize("reader", sorted(READERS))
def test_readers_see_one_current_row_per_video_and_exit_cleanly(reader, labelled):
    # Some deltalake read paths abort the process at exit (delta-rs #2184): run each a few times.
    runs = 3 if reader != "ray" else 1
    for _ in range(runs):
        code = READERS[reader].replace("PATH", repr(str(labelled)))
        done = subprocess.run([str(VENV_BIN / "python"), "-c", code], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.strip().splitlines()[-1]) == 4


def test_export_to_stdout_with_columns(labelled):
    done = subprocess.run([str(VENV_BIN / "stam-label"), "export", str(labelled), "-", "--columns",
                           "video_uri,label,score,status"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "video_uri,label,score,status" and len(lines) == 5
    assert sum(",ok" in line for line in lines) == 3
    jsonl = subprocess.run([str(VENV_BIN / "stam-label"), "export", str(labelled), "-", "--format", "jsonl",
                            "--status", "ok"], capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(rows) == 3 and all(r["label"] == r["labels"][0] for r in rows)
    unknown = subprocess.run([str(VENV_BIN / "stam-label"), "export", str(labelled), "-", "--columns", "nope"],
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "nope" in unknown.stderr


def write_old_layout(root: Path) -> None:
    """The first layout: run_id=<run>/part-*.parquet, run_id also a column; a video relabelled."""
    schema = pa.schema([("video_uri", pa.string()), ("mode", pa.string()), ("segment_index", pa.int32()),
                        ("status", pa.string()), ("labels", pa.list_(pa.string())),
                        ("scores", pa.list_(pa.float32())), ("source_version", pa.string()),
                        ("run_id", pa.string()), ("labelled_at", pa.timestamp("us", tz="UTC"))])
    for minute, run, uris in ((1, "r1", ["a.mp4", "b.mp4"]), (2, "r2", ["b.mp4", "c.mp4"])):
        rows = [{"video_uri": f"/v/{u}", "mode": "video", "segment_index": 0, "status": "ok",
                 "labels": [f"{run}-label"], "scores": [0.5], "source_version": "1:1", "run_id": run,
                 "labelled_at": dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc)} for u in uris]
        (root / f"run_id={run}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / f"run_id={run}" / "part-00000.parquet")


def test_old_layout_is_refused_then_migrated(tmp_path, tiny_weights):
    out = tmp_path / "old"
    write_old_layout(out)
    refused = subprocess.run([str(VENV_BIN / "stam-label"), "run", str(tmp_path), str(out), "--weights",
                              str(tiny_weights)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3 and f"stam-label migrate {out}" in refused.stderr
    migrated = subprocess.run([str(VENV_BIN / "stam-label"), "migrate", str(out)], capture_output=True, text=True,
                              timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    rows = {r["video_uri"]: r for r in LabelTable(str(out)).read_current().to_pylist()}
    assert {u: r["run_id"] for u, r in rows.items()} == {"/v/a.mp4": "r1", "/v/b.mp4": "r2", "/v/c.mp4": "r2"}
    assert rows["/v/b.mp4"]["label"] == "r2-label" and rows["/v/b.mp4"]["score"] == 0.5
    assert (out / "run_id=r1" / "part-00000.parquet").exists()  # nothing deleted
    again = subprocess.run([str(VENV_BIN / "stam-label"), "migrate", str(out)], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 3 and "already a Delta table" in again.stderr


def test_optimize_compacts_and_keeps_every_row(labelled, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(labelled, out)
    before = sorted(LabelTable(str(out)).read_current(["video_uri"])["video_uri"].to_pylist())
    done = subprocess.run([str(VENV_BIN / "stam-label"), "optimize", str(out), "--retention-hours", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(LabelTable(str(out)).read_current(["video_uri"])["video_uri"].to_pylist()) == before
    assert len(LabelTable(str(out)).data_files()) == 1
