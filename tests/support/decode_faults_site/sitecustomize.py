"""Faults on purpose in the decode worker; test code only (see tests/support/decode_faults.py).

Python imports this at startup when its folder is on PYTHONPATH. In the decode worker
process (``python -m stam_core.video.decode_child``) it wraps the worker's reading functions so
that each call first does what the file named by ``$STAM_TEST_DECODE_FAULT_FILE`` says:
"hang" (spin in C holding the GIL, like a native decoder hang), "crash" (SIGSEGV) or
"oom_kill" (SIGKILL, as the out-of-memory killer sends); nothing when it is empty. Any other
Python process started with this folder on its path is left alone.
"""
import os
import signal
import sys

FAULT_FILE_ENV = "STAM_TEST_DECODE_FAULT_FILE"


def _misbehave() -> None:
    with open(os.environ[FAULT_FILE_ENV]) as f:
        fault = f.read().strip()
    if fault == "hang":
        import re

        # Catastrophic backtracking: runs in C for ages and never releases the GIL.
        re.match(r"(a+)+$", "a" * 64 + "b")
    elif fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "oom_kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault:
        raise ValueError(f"unknown decode fault {fault!r}")


def _faulty(function):
    def call(*args, **kwargs):
        _misbehave()
        return function(*args, **kwargs)

    return call


if os.environ.get(FAULT_FILE_ENV) and sys.orig_argv[1:3] == ["-m", "stam_core.video.decode_child"]:
    from stam_core.video import reading

    # The worker looks these up when it starts serving (decode_child.main), after this.
    reading.read_clip_here = _faulty(reading.read_clip_here)
    reading.probe_here = _faulty(reading.probe_here)
