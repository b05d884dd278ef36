"""The label table (Delta Lake): idempotent whole-video commits, skip keys, run records, on a folder and on S3."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time

import pyarrow as pa
import pytest

from jobs.plan import done_keys
from jobs.runs import (
    RunRecord,
    RunSummary,
    read_run_records,
    reap_dead_runs,
    remove_stale_temp_files,
    write_run_record,
)
from jobs.schema import output_schema
from jobs.table import LabelTable


def rows(run_id: str, *specs, minute: int = 0, extra: dict | None = None) -> pa.Table:
    """specs: (uri, status, error_kind, version) or (uri, status, error_kind, version, segment_index)."""
    at = dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc)
    out = []
    for spec in specs:
        uri, status, kind, version = spec[:4]
        segment = spec[4] if len(spec) > 4 else 0
        out.append({"video_uri": uri, "mode": "video" if len(spec) == 4 else "window=1,stride=1",
                    "segment_index": segment, "status": status, "error_kind": kind,
                    "error": None if status == "ok" else f"{uri}: broken", "source_version": version,
                    "labels": ["x", "y"] if status == "ok" else None,
                    "scores": [0.7, 0.2] if status == "ok" else None,
                    "weights_sha256": "w1", "run_id": run_id, "labelled_at": at})
    table = pa.Table.from_pylist(out, schema=output_schema())
    for name, values in (extra or {}).items():
        table = table.append_column(name, pa.array(values))
    return table


@pytest.fixture(params=["local", "s3"])
def table(request, tmp_path, local_s3) -> LabelTable:
    if request.param == "local":
        return LabelTable(str(tmp_path / "out"))
    bucket = f"t-{tmp_path.name.lower().replace('_', '-')}"[:60]
    local_s3.create_bucket(bucket)
    return LabelTable(f"s3://{bucket}/labels")


def current(table: LabelTable) -> dict:
    return {(r["video_uri"], r["segment_index"]): r for r in table.read_current().to_pylist()}


def test_commits_replace_whole_videos_and_skip_keys(table):
    table.check_writable()
    table.ensure_created(output_schema())
    table.commit(rows("r1", ("a", "ok", None, "1:1"), ("b", "error", "timeout", "2:2"),
                      ("c", "error", "format_error", "3:3")), run_id="r1", seq=1)
    table.commit(rows("r2", ("a", "ok", None, "1:9"), ("b", "ok", None, "2:2")), run_id="r2", seq=1)
    now = current(table)
    assert {k[0]: r["run_id"] for k, r in now.items()} == {"a": "r2", "b": "r2", "c": "r1"}
    assert len(now) == 3
    assert now[("a", 0)]["label"] == "x" and now[("a", 0)]["score"] == pytest.approx(0.7)
    # A final error (format_error) is skipped for the same version; a retryable one is not.
    assert done_keys(table, "w1", "video") == {("a", "1:9"), ("b", "2:2"), ("c", "3:3")}
    assert done_keys(table, "other-weights", "video") == set()
    table.commit(rows("r3", ("c", "error", "timeout", "3:3")), run_id="r3", seq=1)
    assert ("c", "3:3") not in done_keys(table, "w1", "video")
    # History: every commit is a version.
    assert len(table.snapshot().history()) >= 4


def test_a_commit_whose_answer_was_lost_adds_nothing(table):
    table.ensure_created(output_schema())
    batch = rows("r1", ("a", "ok", None, "1:1"), ("b", "ok", None, "1:1"))
    first = table.commit(batch, run_id="r1", seq=1)
    version = table.snapshot().version()
    again = table.commit(batch, run_id="r1", seq=1)  # the retry after a lost response
    assert first.version == version and again.version is None
    assert table.snapshot().version() == version
    assert table.snapshot().transaction_version("r1") == 1
    assert len(current(table)) == 2


def test_relabel_drops_stale_windows(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    table.commit(rows("r1", *[("v", "ok", None, "1:1", k) for k in (-1, 0, 1, 2)],
                      ("w", "ok", None, "1:1", 0)), run_id="r1", seq=1)
    # Relabelled with fewer windows: window 2 must go, the other video is untouched.
    table.commit(rows("r2", *[("v", "ok", None, "1:1", k) for k in (-1, 0, 1)]), run_id="r2", seq=1)
    now = current(table)
    assert sorted(k for k in now if k[0] == "v") == [("v", -1), ("v", 0), ("v", 1)]
    assert {r["run_id"] for k, r in now.items() if k[0] == "v"} == {"r2"} and now[("w", 0)]["run_id"] == "r1"
    # Back to video mode: the windows go, one video row stays.
    table.commit(rows("r3", ("v", "ok", None, "1:1")), run_id="r3", seq=1)
    assert sorted(k for k in current(table) if k[0] == "v") == [("v", 0)]


def test_concurrent_writers_leave_one_current_row_per_key(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    uris = [f"s3://b/v{i:03d}.mp4" for i in range(50)]
    errors = []

    def writer(run):
        try:
            for seq, start in enumerate(range(0, 50, 10), 1):
                LabelTable(str(tmp_path / "out")).commit(
                    rows(run, *[(u, "ok", None, "1:1") for u in uris[start:start + 10]]), run_id=run, seq=seq)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"run{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    keys = [(r["video_uri"], r["segment_index"]) for r in table.read_current(["video_uri", "segment_index"]).to_pylist()]
    assert len(keys) == len(set(keys)) == 50


def test_new_columns_evolve_the_schema_without_rewriting(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    table.commit(rows("r1", ("a", "ok", None, "1:1")), run_id="r1", seq=1)
    files_before = set(table.data_files())
    table.commit(rows("r2", ("b", "ok", None, "1:1"), extra={"future_metric": [12.5]}), run_id="r2", seq=1)
    assert files_before <= set(table.data_files())  # the first file was not rewritten
    now = current(table)
    assert now[("b", 0)]["future_metric"] == 12.5 and now[("a", 0)]["future_metric"] is None


def test_legacy_layout_is_detected(tmp_path):
    (tmp_path / "old" / "run_id=r1").mkdir(parents=True)
    (tmp_path / "old" / "run_id=r1" / "part-00000.parquet").write_bytes(b"PAR1")
    assert LabelTable(str(tmp_path / "old")).is_legacy()
    assert not LabelTable(str(tmp_path / "new")).is_legacy()


def test_only_old_temp_files_are_removed(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    runs = tmp_path / "out" / "_runs"
    runs.mkdir(parents=True)
    old, fresh = runs / ".r1.json.dead.tmp", runs / ".r2.json.live.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temp_files(table) == 1
    assert not old.exists() and fresh.exists()  # a live writer may be about to rename it


class _Lines(logging.Handler):
    """Collects one logger's messages (caplog hangs on the root logger, which a test run's
    earlier Ray or CLI set-up may have rearranged)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_run_records_heartbeat_and_dead_runs(tmp_path):
    lines = _Lines()
    logging.getLogger("stam_label").addHandler(lines)
    table = LabelTable(str(tmp_path / "out"))
    stale = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)).isoformat()
    write_run_record(table, "dead", {"run_id": "dead", "status": "running", "heartbeat_at": stale})
    live = RunRecord(table, {"run_id": "live"}, heartbeat_s=0.2).start()
    time.sleep(0.5)
    assert reap_dead_runs(table, own_run_id="me") == ["live"]
    records = {r["run_id"]: r for r in read_run_records(table)}
    assert records["dead"]["status"] == "killed" and "heartbeat" in records["dead"]["reason"]
    logging.getLogger("stam_label").removeHandler(lines)
    assert any("live" in line and "still writing" in line for line in lines.lines), lines.lines
    live.finish("completed", counts={"ok": 1})
    saved = json.loads((tmp_path / "out" / "_runs" / "live.json").read_text())
    assert saved["status"] == "completed" and saved["counts"] == {"ok": 1}


def test_a_run_whose_process_on_this_host_is_gone_is_killed_at_once(tmp_path, monkeypatch):
    """A fresh heartbeat does not keep a run alive when its driver on this host is gone (or the host rebooted)."""
    import platform
    import subprocess
    import sys

    from jobs import runs

    table = LabelTable(str(tmp_path / "out"))
    fresh = dt.datetime.now(dt.timezone.utc).isoformat()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that was this host's and is gone now
    here = {"status": "running", "heartbeat_at": fresh, "host": platform.node(), "boot_id": runs.boot_id(),
            "pid_ns": runs.pid_namespace()}
    write_run_record(table, "gone", dict(here, run_id="gone", pid=child.pid))
    write_run_record(table, "alive", dict(here, run_id="alive", pid=os.getpid()))
    write_run_record(table, "rebooted", dict(here, run_id="rebooted", pid=os.getpid(), boot_id="an-earlier-boot"))
    write_run_record(table, "elsewhere", dict(here, run_id="elsewhere", pid=child.pid, host="another-host"))
    # another container with this hostname and boot id: its pids are not ours to look up
    write_run_record(table, "container", dict(here, run_id="container", pid=child.pid, pid_ns="pid:[1]"))
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: its pid still answers
    write_run_record(table, "zombie", dict(here, run_id="zombie", pid=zombie.pid))
    if runs.boot_id() is None:  # no /proc here: the reboot case cannot be told
        monkeypatch.setattr(runs, "boot_id", lambda: "this-boot")
    assert sorted(reap_dead_runs(table, own_run_id="me")) == ["alive", "container", "elsewhere"]
    records = {r["run_id"]: r for r in read_run_records(table)}
    assert records["gone"]["status"] == "killed" and f"process {child.pid}" in records["gone"]["reason"]
    assert records["rebooted"]["status"] == "killed" and "rebooted" in records["rebooted"]["reason"]
    assert records["zombie"]["status"] == "killed"
    assert records["alive"]["status"] == records["elsewhere"]["status"] == records["container"]["status"] == "running"
    zombie.wait()


def test_errors_no_retry_changes_fail_at_once(tmp_path, monkeypatch):
    """Reads and commits retry what can pass (jobs.transient), not a file where the table should be
    (was 7 retries over 110 s) or a refused permission."""
    from jobs.storage import StorageError
    from jobs.table import CommitError

    afile = tmp_path / "afile"
    afile.write_text("")
    started = time.monotonic()
    with pytest.raises(StorageError, match="Not a directory"):
        LabelTable(str(afile)).exists()
    table = LabelTable(str(tmp_path / "out"), commit_timeout_s=300)

    def refused(*_args, **_kw):
        raise OSError("When reading information for key '_delta_log' in bucket 'b': AWS Error ACCESS_DENIED")

    monkeypatch.setattr(table, "_snapshot", refused)
    with pytest.raises(CommitError, match="ACCESS_DENIED"):
        table.commit(rows("r1", ("a.mp4", "ok", None, "v1")), run_id="r1", seq=1)
    assert time.monotonic() - started < 5


def test_the_write_probe_leaves_no_folder_it_made(tmp_path):
    """check_writable runs before the weights are read: a run that then fails leaves no OUTPUT."""
    LabelTable(str(tmp_path / "a" / "b" / "out")).check_writable()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept" / "_runs").mkdir(parents=True)
    LabelTable(str(tmp_path / "kept")).check_writable()
    assert list((tmp_path / "kept" / "_runs").iterdir()) == []  # the probe file goes, the folders stay


def test_a_write_survives_another_runs_probe_removing_the_new_folder(tmp_path, monkeypatch):
    """Two runs start on one new local OUTPUT: one's probe removes the empty folders it made just as
    the other writes there. The write makes the folder again instead of failing the run."""
    import tempfile

    import stam_core.storage

    real, removed = tempfile.mkstemp, []

    def mkstemp_after_a_cleanup(dir, **kw):
        if not removed:  # the other run's cleanup lands between mkdir and the temporary file
            removed.append(dir)
            os.rmdir(dir)
        return real(dir=dir, **kw)

    monkeypatch.setattr(stam_core.storage.tempfile, "mkstemp", mkstemp_after_a_cleanup)
    table = LabelTable(str(tmp_path / "out"))
    table.check_writable()
    assert removed == [tmp_path / "out" / "_runs"] and list(tmp_path.iterdir()) == []
    write_run_record(table, "r1", {"run_id": "r1", "status": "running"})
    assert [r["run_id"] for r in read_run_records(table)] == ["r1"]


def test_videos_count_once_their_commit_succeeds(tmp_path):
    """A run's counts (and its "N videos committed" message) never include rows a failed commit lost:
    the committer returns what each commit made current, and the run's summary adds only that."""
    from jobs.commit import Committer
    from jobs.table import CommitError

    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    arrived = []
    committer = Committer(table, run_id="r1", schema=output_schema(), commit_every=100, commit_interval_s=3600,
                          video_level=None, on_videos=lambda ok, error: arrived.append((ok, error)))
    summary = RunSummary("r1", table.uri)
    assert committer.add(rows("r1", ("a", "ok", None, "1:1"), ("b", "error", "format_error", "2:2"))) is None
    assert arrived == [(1, 1)]  # progress hears of videos as they arrive, before their commit
    done = committer.flush()
    assert (done.seq, done.counts.ok, done.counts.error, done.counts.rows) == (1, 1, 1, 2)
    assert done.counts.error_kinds == {"format_error": 1} and done.version == table.snapshot().version()
    assert committer.flush() is None  # nothing pending
    summary.committed(done)
    assert (summary.ok, summary.error, summary.rows, summary.commits) == (1, 1, 2, 1)

    def storage_down(*args, **kwargs):
        raise CommitError("storage down")

    table.commit = storage_down
    committer.add(rows("r1", ("c", "ok", None, "3:3")))
    with pytest.raises(CommitError):
        summary.committed(committer.flush())
    assert (summary.ok, summary.error, summary.rows, summary.commits) == (1, 1, 2, 1)


def test_a_commit_is_returned_by_the_add_that_sets_it_off(tmp_path):
    from jobs.commit import Committer

    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    committer = Committer(table, run_id="r1", schema=output_schema(), commit_every=3, commit_interval_s=3600,
                          video_level=None)
    assert committer.add(rows("r1", ("a", "ok", None, "1:1"), ("b", "ok", None, "1:1"))) is None
    done = committer.add(rows("r1", ("c", "ok", None, "1:1")))  # the third row: commit_every reached
    assert done is not None and (done.seq, done.counts.ok, done.counts.rows) == (1, 3, 3)
    assert table.read_current(["video_uri"]).num_rows == 3
    assert committer.flush() is None


def test_new_videos_rewrite_nothing_and_a_relabel_rewrites_only_its_files(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    for seq, prefix in enumerate("abc", 1):  # one file per commit, each holding a narrow URI range
        table.commit(rows("r1", *[(f"{prefix}{i}", "ok", None, "1:1") for i in range(10)]), run_id="r1", seq=seq)
    files = set(table.data_files())
    assert len(files) == 3
    # New videos between existing ones: inside file a's and b's URI ranges, yet nothing is rewritten.
    new = table.commit(rows("r2", ("a5x", "ok", None, "1:1"), ("b5x", "ok", None, "1:1")), run_id="r2", seq=1)
    assert new.rewritten_rows == 0 and files <= set(table.data_files())
    files = set(table.data_files())
    # A relabel of b3 replaces the file that holds it (copying its 9 other rows), and no other file.
    holder = {f for f in files if any(r == "b3" for r in pq_uris(table, f))}
    relabel = table.commit(rows("r3", ("b3", "ok", None, "1:2")), run_id="r3", seq=1)
    assert relabel.rewritten_rows == 9
    assert files - set(table.data_files()) == holder
    now = current(table)
    assert len(now) == 32 and now[("b3", 0)]["run_id"] == "r3" and now[("b4", 0)]["run_id"] == "r1"


def pq_uris(table: LabelTable, path: str) -> list[str]:
    import pyarrow.parquet as pq

    with table.fs.open_input_file(path) as f:
        return pq.read_table(f, columns=["video_uri"])["video_uri"].to_pylist()


def test_data_files_read_into_pandas_with_plain_pyarrow(tmp_path):
    """DuckDB, Spark and pandas users read the files directly: no string_view in their Arrow schema."""
    import pyarrow.parquet as pq

    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    table.commit(rows("r1", ("a", "ok", None, "1:1"), ("b", "ok", None, "1:1")), run_id="r1", seq=1)
    table.commit(rows("r2", ("a", "ok", None, "1:2"), ("c", "ok", None, "1:1")), run_id="r2", seq=1)
    for path in table.data_files():
        frame = pq.read_table(path).to_pandas()
        assert list(frame["labels"].iloc[0]) == ["x", "y"]


def test_the_log_is_checkpointed(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.ensure_created(output_schema())
    for seq in range(1, 102):
        table.commit(rows("r1", (f"v{seq:03d}", "ok", None, "1:1")), run_id="r1", seq=seq)
    log_dir = tmp_path / "out" / "_delta_log"
    assert (log_dir / "_last_checkpoint").exists()
    assert list(log_dir.glob("*.checkpoint.parquet"))
    assert len(current(table)) == 101
