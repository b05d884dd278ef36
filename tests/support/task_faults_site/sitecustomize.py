"""Kill the Ray worker that decodes chosen videos, on purpose; test code only (tests/test_faults.py).

Python imports this at startup when its folder is on PYTHONPATH. With
``$STAM_TEST_KILL_WORKER_ON`` set, ``stam_core.read_clip`` is wrapped in every process so that
reading a video whose name contains that text kills the calling process with SIGKILL, as the
out-of-memory killer or a lost node would take a Ray worker: Ray retries the task, and when
the retries are spent the job must record the video as "lost", never drop it.
"""
import os
import signal

KILL_ENV = "STAM_TEST_KILL_WORKER_ON"

if os.environ.get(KILL_ENV):
    import stam_core

    _read_clip = stam_core.read_clip

    def read_clip(source, *args, **kwargs):
        if os.environ[KILL_ENV] in str(source):
            os.kill(os.getpid(), signal.SIGKILL)
        return _read_clip(source, *args, **kwargs)

    stam_core.read_clip = read_clip  # the decode stage looks it up when it runs
