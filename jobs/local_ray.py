"""A local Ray of the job's own: a head started as a child process that dies with the driver.

``ray.init()`` starting a local Ray leaves its DashboardAgent and RuntimeEnvAgent running when
the driver is killed with SIGKILL (the raylet starts them and they outlive it; measured with
Ray 2.60). Here the driver starts the head with ``ray start --head --block`` instead, in its
own process group, and asks the kernel to send that process SIGTERM when the driver dies
(``PR_SET_PDEATHSIG``, Linux). On SIGTERM, ``ray start --block`` drains the node and stops
every process it started, agents included. On a normal exit the driver stops it the same way.

The head runs under a small guard (jobs/ray_head_guard.py), the leader of its process group:
when ``ray start`` itself dies abruptly (SIGKILL, the OOM killer) its GCS and raylet go with
it but the agents did not (measured: reparented to init, for good); the guard kills what is
left in the group once the head has exited.

The head inherits the driver's environment, so its workers see what a ``ray.init()`` local
Ray's workers see (the driver's S3 settings and credentials; nothing is written to disk).
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs.errors import JobError
from jobs.ray_head_guard import STOP_TIMEOUT_S as GUARD_STOP_TIMEOUT_S
from jobs.ray_head_guard import die_with_parent

START_TIMEOUT_S = 120.0  # a loaded 2-core machine took ~10 s
STOP_TIMEOUT_S = GUARD_STOP_TIMEOUT_S + 5.0  # the guard's own sweep first; then the head's process group is killed
# On SIGTERM `ray start --block` first drains the node for up to 30 s, waiting for work that
# should move elsewhere (Ray Data's detached actors kept it waiting the whole 30 s); a head of
# one job has nowhere to move it, so it stops at once.
HEAD_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


class LocalRayHead:
    """``head = LocalRayHead().start(); ray.init(address=head.address)``; stopped at exit or by stop().

    Start it from the main thread: the kernel's parent-death signal follows the thread that
    started the child.
    """

    def __init__(self):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # What `ray start` prints (kept for an error message); Ray's own logs stay in its session
        # folder under Ray's temp dir, as with ray.init().
        fd, path = tempfile.mkstemp(prefix="stam-ray-start-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.proc: subprocess.Popen | None = None

    def start(self) -> LocalRayHead:
        ray = str(Path(sys.executable).parent / "ray")
        if not Path(ray).exists():
            ray = shutil.which("ray") or "ray"
        # The guard by its file (it imports only the standard library): the driver may have found
        # this package through sys.path alone, which a child does not inherit.
        cmd = [sys.executable, str(Path(__file__).with_name("ray_head_guard.py")),
               ray, "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
               "--include-dashboard=false", "--disable-usage-stats"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env={**_agree_on_authentication(), **HEAD_ENV}, start_new_session=True,
                                         preexec_fn=die_with_parent)  # noqa: PLW1509 (one prctl call)
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                self.stop()
                raise JobError(f"could not start a local Ray (`ray start --head`); its output:\n{tail}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        """SIGTERM to the head's guard (the head stops all its processes, the guard sweeps the rest),
        SIGKILL to its group if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        import ray

        if ray.is_initialized():  # disconnect first: the driver must not watch its GCS go away
            ray.shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
        self.log_path.unlink(missing_ok=True)

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


def _agree_on_authentication() -> dict:
    """The head's environment, with the driver's authentication mode (RAY_AUTH_MODE).

    Ray fixes a process's mode when it is imported, and a driver joining by address never
    turns token authentication on by itself, so both sides must be told. Before Ray is
    imported, the driver takes token authentication with a token of this run's own, as Ray
    2.60 does for a cluster ray.init() starts; a driver that imported Ray without the variable
    is in mode "disabled", and so is its head. A mode the user set is kept on both sides.
    """
    if "RAY_AUTH_MODE" not in os.environ:
        if "ray" in sys.modules:
            return {**os.environ, "RAY_AUTH_MODE": "disabled"}
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return dict(os.environ)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
