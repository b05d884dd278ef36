"""Faults, end to end through the `stam-label` CLI: a flaky S3, lost commit answers, two runs at
once, a killed driver, Ctrl-C and SIGTERM. Real moto S3, a real Ray head, real videos.

Exactly once is checked on the table's current rows: one row per (video_uri, segment_index),
for exactly the videos put in.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import VENV_BIN, wait_for
from support.faultproxy import FaultProxy

import stam_core.model
from jobs.runs import read_run_records
from jobs.table import LabelTable
from jobs.tools.samples import make_sample_video

FIRST_COMMIT = "_delta_log/00000000000000000001.json"  # version 0 is the table's creation


# ---- helpers ---------------------------------------------------------------------------------
def make_videos(folder: Path, count: int, seconds: float = 1.0, size=(96, 64), fps: int = 10) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_sample_video(folder / f"v{i:02d}.mp4", seed=i, seconds=seconds, fps=fps, size=size)
            for i in range(count)]


def upload(local_s3, paths: list[Path], prefix: str) -> list[str]:
    uris = [f"{prefix.rstrip('/')}/{p.name}" for p in paths]
    for path, uri in zip(paths, uris):
        local_s3.upload(path, uri)
    return uris


class Cli:
    """`stam-label ...` in a subprocess, its output in a file (readable while it runs)."""

    def __init__(self, log: Path, *args: str, env: dict | None = None):
        self.log, self.args = log, args
        self._out = open(log, "w")
        self.proc = subprocess.Popen([str(VENV_BIN / "stam-label"), *args], env=env or os.environ.copy(),
                                     stdout=self._out, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.started = time.time()

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"stam-label {' '.join(self.args)} ran past {timeout} s:\n{self.output()[-3000:]}")
        finally:
            self._out.flush()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait()

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    @property
    def elapsed(self) -> float:
        return time.time() - self.started


def run_cli(log: Path, *args: str, env: dict | None = None, timeout: float = 300) -> tuple[int, str]:
    cli = Cli(log, *args, env=env)
    rc = cli.wait(timeout)
    return rc, cli.output()


def key_counts(table) -> Counter:
    return Counter(zip(table["video_uri"].to_pylist(), table["segment_index"].to_pylist()))


def records(out: str) -> dict[str, dict]:
    return {r["run_id"]: r for r in read_run_records(LabelTable(out))}


def run_id_of(output: str) -> str:
    found = re.findall(r"run (\d{8}T\d{6}Z-[0-9a-f]{6})", output)
    assert found, output[-3000:]
    return found[-1]


def s3_keys(local_s3, bucket: str, prefix: str) -> list[str]:
    pages = local_s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def slower_weights(tmp_path_factory) -> Path:
    """The tiny model with 64 frames per clip, wider and deeper (~0.3 s a clip on one thread in fp32;
    bf16, which --precision auto picks on CPUs with AVX512-BF16, is several times faster).

    The driver commits whole Ray blocks: a block closes at Ray Data's target size (128 MiB),
    about 110 clips of the 8-frame tiny model, so a small run arrives as one block and makes
    one commit whatever --commit-every says. 64-frame clips (9.6 MB each) close a block every
    ~14 clips, so a run of a few dozen videos commits several times, and the slower model
    makes a kill or a signal land between those commits rather than after the last one."""
    import torch

    torch.manual_seed(0)
    model = stam_core.model.create_model("stam_tiny", num_frames=64, embed_dim=192, depth=4)
    return stam_core.model.save_checkpoint(model, tmp_path_factory.mktemp("weights") / "slower64.pth")


def slow_args(weights: Path, ray_head: str) -> list[str]:
    return ["--weights", str(weights), "--address", ray_head, "--batch-size", "1", "--commit-every", "1",
            "--decode-workers", "1", "--model-threads", "1", "--precision", "fp32", "--progress-interval", "0"]


# ---- 1. a flaky S3 ---------------------------------------------------------------------------
def test_flaky_s3_labels_every_video_exactly_once(local_s3, ray_head, tiny_weights, tmp_path):
    """503 SlowDown, 500, resets (before the server saw the request and after it acted) and 3-s
    stalls on every S3 request of the job (driver, delta-rs, Ray workers): every video still
    gets exactly one current row, and none is lost."""
    local_s3.create_bucket("flaky")
    uris = upload(local_s3, make_videos(tmp_path / "videos", 12), "s3://flaky/in")
    out = "s3://flaky/out"
    with FaultProxy(local_s3.endpoint, seed=20261101, slowdown=0.10, internal=0.05, reset=0.05, delay=0.03,
                    delay_s=3.0) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint}
        started = time.time()
        rc, output = run_cli(tmp_path / "run.log", "-v", "run", "s3://flaky/in", out, "--weights", str(tiny_weights),
                             "--address", ray_head, "--batch-size", "4", "--commit-every", "3",
                             "--progress-interval", "0", env=env, timeout=400)
        faults = proxy.describe()
    print(f"flaky run: {time.time() - started:.1f} s, rc {rc}\n{faults}\n{output[-4000:]}")
    assert rc == 0, f"{output[-5000:]}\n--- faults injected ---\n{faults}"
    assert proxy.faulted(), "the proxy injected no fault: the job did not go through it"

    current = LabelTable(out).read_current()
    assert key_counts(current) == Counter({(u, 0): 1 for u in uris})
    rows = current.to_pylist()
    lost = [r for r in rows if r["error_kind"] == "lost"]
    assert not lost, lost
    errors = {r["video_uri"]: (r["error_kind"], r["error"]) for r in rows if r["status"] != "ok"}
    assert not errors, f"videos that became error rows under S3 faults: {errors}\n{faults}"
    (record,) = records(out).values()
    assert record["status"] == "completed" and record["counts"]["ok"] == len(uris)


def test_lost_commit_answer_adds_nothing(local_s3, ray_head, slower_weights, tmp_path):
    """The PUT of a commit's log entry reaches S3, its answer does not: the retry finds the
    run's app transaction and adds nothing (no duplicate rows, no extra table version).

    Twice: the first commit (into the empty table) and the second (a merge that replaces files)."""
    local_s3.create_bucket("lostanswer")
    # 20 videos of 64-frame clips: two Ray blocks at least, so two commits at least.
    uris = upload(local_s3, make_videos(tmp_path / "videos", 20), "s3://lostanswer/in")
    out = "s3://lostanswer/out"
    with FaultProxy(local_s3.endpoint) as proxy:
        # Version 0 creates the table; 1.. are the run's commits (a block of videos each).
        dropped = [proxy.add_rule("PUT", rf"^/lostanswer/out/_delta_log/{v:020d}\.json$", "drop_response")
                   for v in (1, 2)]
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.endpoint}
        rc, output = run_cli(tmp_path / "run.log", "-v", "run", "s3://lostanswer/in", out,
                             *slow_args(slower_weights, ray_head), env=env)
        log_puts = [(r.method, r.path, r.action, r.status) for r in proxy.records if "_delta_log/" in r.path
                    and r.method == "PUT"]
    assert rc == 0, output[-5000:]
    (record,) = records(out).values()
    commits = record["counts"]["commits"]
    assert commits >= 2, f"{commits} commits: the rows came in one batch\n{output[-3000:]}"
    assert [len(rule.hits) for rule in dropped] == [1, 1], log_puts  # both answers were dropped
    assert len(re.findall(r"commit [12] of run \S+ failed", output)) == 2, output[-3000:]

    from deltalake import DeltaTable

    table = LabelTable(out)
    current = table.read_current()
    assert key_counts(current) == Counter({(u, 0): 1 for u in uris})
    run_id = run_id_of(output)
    assert record["status"] == "completed"
    delta = DeltaTable(out, storage_options=table.storage_options)
    history = delta.history()
    landed = Counter(h.get("stam_label.commit") for h in history if h.get("stam_label.run_id") == run_id)
    assert landed == Counter({str(seq): 1 for seq in range(1, commits + 1)}), (history, log_puts)
    assert delta.version() == commits, (history, log_puts)  # version 0 (create) + one per commit
    assert delta.transaction_version(run_id) == commits
    # The current version references each data file once, and each one exists.
    files = delta.file_uris()
    assert len(set(files)) == len(files)
    stored = {f"s3://lostanswer/{k}" for k in s3_keys(local_s3, "lostanswer", "out/")}
    assert set(files) <= stored


# ---- 2. two runs at once ---------------------------------------------------------------------
def test_two_concurrent_runs_on_one_output(local_s3, ray_head, tiny_weights, tmp_path):
    local_s3.create_bucket("twice")
    uris = upload(local_s3, make_videos(tmp_path / "videos", 20), "s3://twice/in")
    out = "s3://twice/out"
    args = ["run", "s3://twice/in", out, "--weights", str(tiny_weights), "--address", ray_head,
            "--batch-size", "2", "--commit-every", "2", "--progress-interval", "0"]
    first = Cli(tmp_path / "first.log", *args)
    try:
        wait_for(lambda: first.proc.poll() is not None
                 or any(k.endswith(".json") for k in s3_keys(local_s3, "twice", "out/_runs/")), 120,
                 "the first run's record")
        second = Cli(tmp_path / "second.log", *args)
        rc2 = second.wait(300)
        rc1 = first.wait(300)
    finally:
        first.kill()
    out1, out2 = first.output(), second.output()
    print(f"first run {first.elapsed:.1f} s, second {second.elapsed:.1f} s")
    assert (rc1, rc2) == (0, 0), f"--- first ---\n{out1[-3000:]}\n--- second ---\n{out2[-3000:]}"
    id1, id2 = run_id_of(out1), run_id_of(out2)
    assert id1 != id2
    # The second started after the first wrote its record, and warns that it is still writing.
    assert re.search(rf"run {id1} \(host .*\) is still writing", out2), out2[-3000:]

    current = LabelTable(out).read_current()
    assert key_counts(current) == Counter({(u, 0): 1 for u in uris})
    rows = current.to_pylist()
    assert {r["run_id"] for r in rows} <= {id1, id2}
    bad = [(r["video_uri"], r["run_id"], r["error_kind"], r["error"]) for r in rows if r["status"] != "ok"]
    assert not bad, bad  # in particular no "lost" row written over the other run's label
    runs = records(out)
    assert set(runs) == {id1, id2}
    assert {r["status"] for r in runs.values()} == {"completed"}


# ---- 3. a killed driver ----------------------------------------------------------------------
def current_by_video(out: str) -> dict[str, list[int]]:
    table = LabelTable(out).read_current()
    by_video: dict[str, list[int]] = {}
    for uri, index in zip(table["video_uri"].to_pylist(), table["segment_index"].to_pylist()):
        by_video.setdefault(uri, []).append(index)
    return {u: sorted(v) for u, v in by_video.items()}


def make_stale(out: Path, run_id: str, age_s: float = 3600) -> None:
    path = out / "_runs" / f"{run_id}.json"
    record = json.loads(path.read_text())
    assert record["status"] == "running", record
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s)).isoformat()
    record["heartbeat_at"] = old
    path.write_text(json.dumps(record))


def kill_after_first_commit(cli: Cli, out: Path, timeout: float = 240) -> None:
    try:
        wait_for(lambda: cli.proc.poll() is not None or (out / FIRST_COMMIT).exists(), timeout, "the first commit")
    finally:
        cli.kill(signal.SIGKILL)  # the driver, mid-run (its process group: nothing else of the run)
    assert (out / FIRST_COMMIT).exists(), cli.output()[-3000:]


def test_killed_driver_video_mode_resumes_exactly_once(ray_head, slower_weights, tmp_path):
    videos = make_videos(tmp_path / "videos", 30)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "videos"), str(out), *slow_args(slower_weights, ray_head)]
    killed = Cli(tmp_path / "killed.log", *args)
    kill_after_first_commit(killed, out)
    partial = current_by_video(str(out))
    assert 1 <= len(partial) < len(videos), f"{len(partial)} committed: the kill landed too late"
    assert all(v == [0] for v in partial.values())
    (killed_record,) = read_run_records(LabelTable(str(out)))
    killed_id = killed_record["run_id"]
    assert killed_record["status"] == "running"

    # A rerun right away: the killed driver's heartbeat is fresh, but it ran on this host and its
    # process is gone, so it is marked killed at once (not warned about as a live run).
    rc, output = run_cli(tmp_path / "rerun.log", *args)
    assert rc == 0, output[-4000:]
    assert f"{len(partial)} skipped" in output, output[-3000:]
    assert f"run {killed_id}" in output and "marked killed" in output, output[-3000:]
    assert "is still writing" not in output, output[-3000:]
    record = records(str(out))[killed_id]
    assert record["status"] == "killed" and f"process {killed.proc.pid}" in record["reason"], record
    final = current_by_video(str(out))
    assert final == {str(p): [0] for p in videos}
    rerun_id = run_id_of(output)
    assert records(str(out))[rerun_id]["counts"]["ok"] == len(videos) - len(partial)

    # The next run has nothing to label.
    rc, output = run_cli(tmp_path / "third.log", *args)
    assert rc == 0, output[-4000:]
    assert f"{len(videos)} skipped" in output
    assert current_by_video(str(out)) == final


def test_killed_driver_window_mode_resumes_whole_videos(ray_head, slower_weights, tmp_path):
    videos = make_videos(tmp_path / "videos", 10, seconds=3.0)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "videos"), str(out), *slow_args(slower_weights, ray_head),
            "--window-seconds", "1"]
    killed = Cli(tmp_path / "killed.log", *args)
    kill_after_first_commit(killed, out)
    partial = current_by_video(str(out))
    assert 1 <= len(partial) < len(videos), f"{len(partial)} committed: the kill landed too late"
    # Whole videos only: every committed video has its video-level row and all its windows.
    assert all(v == [-1, 0, 1, 2] for v in partial.values()), partial
    (killed_record,) = read_run_records(LabelTable(str(out)))
    killed_id = killed_record["run_id"]

    make_stale(out, killed_id)
    rc, output = run_cli(tmp_path / "rerun.log", *args)
    assert rc == 0, output[-4000:]
    assert "marked killed" in output and "is still writing" not in output, output[-3000:]
    assert f"{len(partial)} skipped" in output, output[-3000:]
    assert records(str(out))[killed_id]["status"] == "killed"
    assert current_by_video(str(out)) == {str(p): [-1, 0, 1, 2] for p in videos}
    table = LabelTable(str(out)).read_current()
    assert max(key_counts(table).values()) == 1
    kept = {r["video_uri"] for r in table.to_pylist() if r["run_id"] == killed_id}
    assert kept == set(partial)  # the rerun left the killed run's whole videos alone


# ---- 4. Ctrl-C and SIGTERM -------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_run_keeps_its_commits_and_rerun_labels_the_rest(ray_head, slower_weights, tmp_path, sig):
    videos = make_videos(tmp_path / "videos", 30)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "videos"), str(out), *slow_args(slower_weights, ray_head)]
    cli = Cli(tmp_path / "interrupted.log", *args)
    try:
        wait_for(lambda: cli.proc.poll() is not None or (out / FIRST_COMMIT).exists(), 240, "the first commit")
        os.kill(cli.proc.pid, sig)  # the driver only, as a terminal's Ctrl-C or a scheduler's stop
        rc = cli.wait(120)
    finally:
        cli.kill()
    output = cli.output()
    if rc == 0 and re.search(r"run \S+: \d+ ok, \d+ error", output):
        # Ray delivered the last blocks right behind the first: the run ended before the signal.
        pytest.skip("the signal landed after the run had completed (timing); nothing to check")
    assert rc == 130, output[-4000:]
    assert "interrupted" in output
    (record,) = read_run_records(LabelTable(str(out)))
    assert record["status"] == "interrupted", record
    committed = current_by_video(str(out))
    # Usually part of the videos; all of them when Ray delivered every row in one block before the signal.
    assert 1 <= len(committed) <= len(videos)
    assert record["counts"]["ok"] + record["counts"]["error"] == len(committed)
    assert f"{len(committed)} videos committed" in output, output[-2000:]

    rc, output = run_cli(tmp_path / "rerun.log", *args)
    assert rc == 0, output[-4000:]
    assert f"{len(committed)} skipped" in output, output[-3000:]
    assert "is still writing" not in output  # an interrupted run finished its record
    rerun = records(str(out))[run_id_of(output)]
    assert rerun["counts"]["ok"] == len(videos) - len(committed)
    final = LabelTable(str(out)).read_current()
    assert key_counts(final) == Counter({(str(p), 0): 1 for p in videos})
    assert {r["video_uri"] for r in final.to_pylist() if r["run_id"] == record["run_id"]} == set(committed)


def test_a_video_whose_ray_worker_keeps_dying_is_recorded_lost_then_relabelled(tiny_weights, tmp_path):
    """A Ray worker killed on every try of one video (OOM killer, lost node): Ray's retries run
    out, the block is dropped, and the run records each of its videos as "lost", once; the next
    run labels them. Nothing disappears and nothing is labelled twice."""
    videos = make_videos(tmp_path / "videos", 16)  # 17 videos: two plan blocks, one of them doomed
    doomed = make_sample_video(tmp_path / "videos" / "zz_doomed.mp4", seed=9, seconds=1.0, size=(96, 64), fps=10)
    out = tmp_path / "out"
    site = Path(__file__).parent / "support" / "task_faults_site"
    env = {**os.environ, "STAM_TEST_KILL_WORKER_ON": "zz_doomed",
           "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    # A local Ray of the CLI's own: its workers inherit this environment.
    rc, output = run_cli(tmp_path / "run1.log", "run", str(tmp_path / "videos"), str(out), "--weights",
                         str(tiny_weights), "--batch-size", "2", "--max-error-rate", "1", "--progress-interval", "0",
                         env=env, timeout=400)
    rows = LabelTable(str(out)).read_current().to_pylist()
    by_uri = {r["video_uri"]: r for r in rows}
    assert rc == 0, output[-4000:]  # --max-error-rate 1: lost videos are error rows, not a failed run
    assert sorted(by_uri) == sorted([str(p) for p in videos] + [str(doomed)]) and len(rows) == 17, output[-4000:]
    assert by_uri[str(doomed)]["error_kind"] == "lost", by_uri[str(doomed)]
    assert "failed past its retries" in by_uri[str(doomed)]["error"]
    lost = [u for u, r in by_uri.items() if r["error_kind"] == "lost"]
    ok = [u for u, r in by_uri.items() if r["status"] == "ok"]
    assert len(lost) + len(ok) == 17 and ok, "only the doomed video's block is lost"
    (record,) = records(str(out)).values()
    assert record["status"] == "completed" and record["counts"]["lost"] == len(lost), record

    rc, output = run_cli(tmp_path / "run2.log", "run", str(tmp_path / "videos"), str(out), "--weights",
                         str(tiny_weights), "--batch-size", "2", "--progress-interval", "0", timeout=400)
    assert rc == 0, output[-4000:]
    current = LabelTable(str(out)).read_current()
    assert key_counts(current) == Counter({(u, 0): 1 for u in by_uri})
    assert set(current["status"].to_pylist()) == {"ok"}
