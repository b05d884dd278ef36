"""Ray around the job: a worker's exception reaches the driver, a killed driver leaves no Ray
behind, and a run survives losing a worker node. Real Ray processes, real videos, the CLI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import VENV_BIN, wait_for
from test_faults import Cli, make_videos

from jobs.table import LabelTable

ray = pytest.importorskip("ray")


# ---- helpers ---------------------------------------------------------------------------------
def descendants(pid: int) -> dict[int, str]:
    """Every living process below ``pid`` (children of children too): pid -> command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":  # a zombie is already dead
                parents[int(entry.name)] = int(fields[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = _cmdline(child)
                frontier.append(child)
    return found


def alive(pids) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            out[pid] = _cmdline(pid)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNode:
    """`ray start --block` in its own process group (a head, or a worker joining one)."""

    def __init__(self, log: Path, *args: str, env: dict):
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1",
                                      "--disable-usage-stats", *args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def raylet(self) -> int | None:
        return next((pid for pid, cmd in descendants(self.proc.pid).items() if "/raylet/raylet" in cmd), None)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# ---- a worker's exception --------------------------------------------------------------------
def test_a_video_error_raised_in_a_worker_reaches_the_driver_as_itself(ray_head):
    """stam_core's VideoError takes two arguments; pickled by default it could not be rebuilt
    on the driver, which then saw only "UnserializableException: Failed to deserialize"."""
    from stam_core.errors import VideoReadError

    if not ray.is_initialized():
        ray.init(address=ray_head)

    @ray.remote(max_retries=0)
    def read():
        raise VideoReadError("s3://bucket/a.mp4", "connection reset by peer")

    with pytest.raises(VideoReadError) as raised:
        ray.get(read.remote())
    assert raised.value.source == "s3://bucket/a.mp4" and raised.value.kind == "read_error"
    assert "s3://bucket/a.mp4: connection reset by peer" in str(raised.value)


# ---- what the operator sees -----------------------------------------------------------------
@pytest.mark.slow
def test_a_default_run_prints_no_ray_internals_and_verbose_no_deprecation(tmp_path, tiny_weights, ray_head):
    """Without -v: none of Ray's core lines (the model actors' "constructor arguments in the
    object store" ERROR came on every run). With -v: Ray as it is, but no deprecation warning
    (the job uses Ray's public, non-deprecated API only)."""
    from test_faults import run_cli

    make_videos(tmp_path / "videos", 2)
    args = ["--weights", str(tiny_weights), "--address", ray_head, "--batch-size", "2", "--progress-interval", "0"]
    rc, quiet = run_cli(tmp_path / "quiet.log", "run", str(tmp_path / "videos"), str(tmp_path / "out1"), *args)
    assert rc == 0, quiet[-3000:]
    assert "constructor arguments" not in quiet and "core_worker" not in quiet, quiet[-3000:]
    assert "2 ok" in quiet
    rc, verbose = run_cli(tmp_path / "verbose.log", "-v", "run", str(tmp_path / "videos"), str(tmp_path / "out2"),
                          *args)
    assert rc == 0, verbose[-3000:]
    assert "Deprecat" not in verbose, [line for line in verbose.splitlines() if "Deprecat" in line]
    assert "streaming_executor" in verbose  # -v leaves Ray's own lines on the console
    # ...including the ERROR line the default run hid (Ray 2.60; ray-project/ray#53727: drop this
    # assertion once Ray stops printing it).
    assert "constructor arguments in the object store" in verbose


# ---- a killed driver -------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_driver_of_a_local_run_leaves_no_ray_process(tmp_path, tiny_weights):
    """SIGKILL to `stam-label run` on a local Ray of its own: every process of that Ray (its
    head, GCS, raylet, DashboardAgent, RuntimeEnvAgent, workers) is gone soon after."""
    make_videos(tmp_path / "videos", 12)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cli = Cli(tmp_path / "run.log", "run", str(tmp_path / "videos"), str(tmp_path / "out"), "--weights",
              str(tiny_weights), "--batch-size", "2", "--progress-interval", "0", env=env)
    try:
        def labelling():  # planned, and Ray's agents and a model worker up
            tree = descendants(cli.proc.pid)
            agents = [cmd for cmd in tree.values() if "agent" in cmd.lower()]
            return tree if "to label" in cli.output() and len(agents) >= 2 else None

        ray_processes = wait_for(labelling, 240, "the run to start labelling")
        assert cli.proc.poll() is None, "the run finished before it could be killed"
        os.kill(cli.proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
        cli.proc.wait()
        try:
            wait_for(lambda: not alive(ray_processes), 45, "the killed run's Ray processes to exit")
        except AssertionError:
            raise AssertionError(f"still running: {alive(ray_processes)}") from None
    finally:
        for pid in alive(descendants(cli.proc.pid)):
            os.kill(pid, signal.SIGKILL)
        cli.kill()


@pytest.mark.slow
def test_the_local_heads_agents_do_not_outlive_a_killed_ray_start(monkeypatch):
    """`ray start` of the job's own head killed with SIGKILL (the OOM killer): its GCS and raylet
    die with it, and Ray's DashboardAgent and RuntimeEnvAgent, which outlived it without the
    guard (jobs/ray_head_guard.py), are gone soon after too."""
    from jobs.local_ray import LocalRayHead

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token of this test's making in os.environ
    head, tree = LocalRayHead().start(), {}
    try:
        def agents_up():
            tree = {head.proc.pid: _cmdline(head.proc.pid), **descendants(head.proc.pid)}
            return tree if sum("Agent" in cmd for cmd in tree.values()) >= 2 else None

        tree = wait_for(agents_up, 120, "the head's DashboardAgent and RuntimeEnvAgent")
        (ray_start,) = [pid for pid, cmd in tree.items() if " start --head" in cmd and "ray_head_guard" not in cmd]
        os.kill(ray_start, signal.SIGKILL)
        tree.pop(ray_start)  # the test's own child without the guard: a zombie until head.stop()
        try:
            wait_for(lambda: not alive(tree), 30, "the head's processes to exit")
        except AssertionError:
            raise AssertionError(f"still running: {alive(tree)}") from None
    finally:  # what is left (orphans are no descendants any more: the tree seen before)
        for pid in alive({**tree, **descendants(head.proc.pid)}):
            os.kill(pid, signal.SIGKILL)
        head.stop()


# ---- a lost node -----------------------------------------------------------------------------
def alive_nodes(address: str, env: dict) -> int:
    """How many nodes the cluster at ``address`` counts alive (asked from a fresh process: this
    one may be connected to the session's own head)."""
    code = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    done = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0


@pytest.fixture
def two_nodes(tmp_path):
    """A head with 1 CPU and a worker node with 2, both on this machine; yields (address, worker)."""
    # No 30-s drain when a node is stopped at the end (as the job's own head: jobs/local_ray.py).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = RayNode(tmp_path / "head.log", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0",
                   "--include-dashboard=false", env=env)
    worker = None
    try:
        def head_ready():
            if head.proc.poll() is not None:
                raise AssertionError((tmp_path / "head.log").read_text()[-2000:])
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(head_ready, 120, "the head")
        worker = RayNode(tmp_path / "worker.log", f"--address={address}", "--num-cpus=2", "--num-gpus=0", env=env)
        wait_for(worker.raylet, 120, "the worker node's raylet")
        # Registered with the head, not only started: on a loaded machine a run could otherwise
        # be placed on the head alone before the worker node joins.
        wait_for(lambda: alive_nodes(address, env) >= 2, 120, "the worker node to join the cluster")
        yield address, worker, env
    finally:
        if worker:
            worker.stop()
        head.stop()


@pytest.mark.slow
def test_a_run_survives_losing_a_worker_node(tmp_path, tiny_weights, two_nodes):
    """The worker node's raylet is killed mid-run: decode tasks are retried on the head, the
    model actor restarts there, and the run completes: each video once, ok or "lost"."""
    address, worker, env = two_nodes
    videos = make_videos(tmp_path / "videos", 32)
    out = tmp_path / "out"
    cli = Cli(tmp_path / "run.log", "run", str(tmp_path / "videos"), str(out), "--address", address, "--weights",
              str(tiny_weights), "--batch-size", "2", "--commit-every", "2", "--max-error-rate", "1",
              "--progress-interval", "0", env=env)
    try:
        # Kill once a stage of the run works on the worker node (a Ray worker process below its
        # raylet named after the stage: "ray::MapBatches(decode_task)", "ray::MapWorker(...
        # ModelActor)") and before the run is over. Which stages land there is Ray's choice.
        def working_there():
            raylet = worker.raylet()
            busy = raylet and any(stage in cmd for cmd in descendants(raylet).values()
                                  for stage in ("MapBatches", "MapWorker", "decode_task", "ModelActor"))
            return raylet if busy else None

        raylet = wait_for(working_there, 240, "work on the worker node")
        assert cli.proc.poll() is None, "the run finished before the node was lost"
        os.kill(raylet, signal.SIGKILL)
        lost_at = time.time()
        rc = cli.wait(timeout=400)
    finally:
        cli.kill()
    output = cli.output()
    assert rc == 0, output[-4000:]
    assert "UnserializableException" not in output and "Traceback" not in output, output[-4000:]
    rows = LabelTable(str(out)).read_current().to_pylist()
    assert Counter((r["video_uri"], r["segment_index"]) for r in rows) == Counter((str(p), 0) for p in videos)
    kinds = Counter(r["error_kind"] or "ok" for r in rows)
    assert set(kinds) <= {"ok", "lost"} and kinds["ok"] > 0, kinds
    print(f"run finished {time.time() - lost_at:.1f} s after the node was lost: {dict(kinds)}")


@pytest.mark.slow
def test_work_no_node_can_take_is_recorded_lost_and_the_run_finishes(tmp_path, tiny_weights):
    """The only GPU node is lost mid-run: the model actor has nowhere to restart. After Ray
    Data's no-progress timeout (20 s here) what was labelled stays, the rest is "lost", and the
    run completes; the next run would label the lost videos."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S": "20"}
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = RayNode(tmp_path / "head.log", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
                   "--include-dashboard=false", env=env)
    gpu = None
    try:
        def head_ready():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(head_ready, 120, "the head")
        # A declared GPU (torch finds no CUDA and runs on the CPU): the model actor must go there.
        gpu = RayNode(tmp_path / "gpu.log", f"--address={address}", "--num-cpus=1", "--num-gpus=1", env=env)
        wait_for(gpu.raylet, 120, "the GPU node's raylet")
        videos = make_videos(tmp_path / "videos", 40)
        out = tmp_path / "out"
        cli = Cli(tmp_path / "run.log", "run", str(tmp_path / "videos"), str(out), "--address", address,
                  "--weights", str(tiny_weights), "--batch-size", "2", "--commit-every", "2", "--commit-interval",
                  "1", "--max-error-rate", "1", "--progress-interval", "0", env=env)
        try:
            # Lost once the model has labelled a first batch (the driver logs its precision then).
            wait_for(lambda: "runs in" in cli.output(), 240, "the model's first batch")
            assert cli.proc.poll() is None, "the run finished before the node was lost"
            os.kill(gpu.raylet(), signal.SIGKILL)
            rc = cli.wait(timeout=400)
        finally:
            cli.kill()
    finally:
        if gpu:
            gpu.stop()
        head.stop()
    output = cli.output()
    assert rc == 0, output[-4000:]
    assert "recorded as 'lost'" in output, output[-3000:]
    rows = LabelTable(str(out)).read_current().to_pylist()
    assert Counter((r["video_uri"], r["segment_index"]) for r in rows) == Counter((str(p), 0) for p in videos)
    kinds = Counter(r["error_kind"] or "ok" for r in rows)
    assert set(kinds) == {"ok", "lost"}, kinds
