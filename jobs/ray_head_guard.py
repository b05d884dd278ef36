"""The guard of the job's local Ray head: ``python ray_head_guard.py ray start --head --block ...``.

Why a guard: Ray's DashboardAgent and RuntimeEnvAgent are children of the raylet and do not
die with it when it is killed with SIGKILL (measured with Ray 2.60: they stay, reparented to
init, for good). That happens when ``ray start --block`` itself dies abruptly (SIGKILL, the
OOM killer; its GCS and raylet die with it) or when its own stop ends in SIGKILL. They stay in
the process group the head was started in, so this guard, the leader of that group, runs the
head as its child and, once the head has exited, kills whatever is left in the group (itself
last). The driver starts the guard with a parent-death signal (jobs/local_ray.py): SIGTERM
here is forwarded to the head (its normal stop), then the group is swept.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = 20.0  # the head's own stop, then the group is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when its parent dies (Linux; elsewhere a no-op). The
    driver starts the guard so, and the guard the head."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(cmd: list[str]) -> None:
    head = subprocess.Popen(cmd, preexec_fn=die_with_parent)  # noqa: PLW1509 (one prctl call); our group
    stop_by: list[float] = []

    def stop(_signum, _frame) -> None:
        if not stop_by:
            stop_by.append(time.monotonic() + STOP_TIMEOUT_S)
            if head.poll() is None:
                head.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    while head.poll() is None and not (stop_by and time.monotonic() > stop_by[0]):
        time.sleep(0.2)
    # The head has exited (or hung past its stop): nothing of this Ray may outlive it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
