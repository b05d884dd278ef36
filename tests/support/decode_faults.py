"""Make the decode worker misbehave on purpose: the tests of its time limit and crash handling.

``injected(folder)`` replaces this process's decode worker with one that has
``decode_faults_site`` on its PYTHONPATH (its ``sitecustomize`` wraps the worker's reading
functions) and yields ``set_fault(kind)``: from the next call on, the worker hangs ("hang"),
crashes ("crash"), is killed as by the out-of-memory killer ("oom_kill"), or behaves (None).
On exit the environment is restored and the worker is replaced by an ordinary one on the
next call. Production code knows nothing of this.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from stam_core.video import decode_worker

SITE = Path(__file__).parent / "decode_faults_site"
FAULT_FILE_ENV = "STAM_TEST_DECODE_FAULT_FILE"  # as in decode_faults_site/sitecustomize.py


@contextlib.contextmanager
def injected(folder: Path) -> Iterator[Callable[[str | None], None]]:
    fault_file = folder / "decode_fault"
    fault_file.write_text("")
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", FAULT_FILE_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), saved["PYTHONPATH"]) if p)
    os.environ[FAULT_FILE_ENV] = str(fault_file)
    decode_worker.stop_worker()  # the next call starts one with this environment
    try:
        yield lambda fault: fault_file.write_text(fault or "")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        decode_worker.stop_worker()
