"""The decode worker: a child process that runs ``read_clip``/``probe_video`` so that a hard
time limit can be enforced from outside. decord can hang in native code while holding the
GIL, and FFmpeg can spin on a malicious file; no thread or signal inside the decoding process
can stop either, but killing the process always works.

Parent side, ``call()``: one worker per calling process, started on first use (a fresh
interpreter that imports only numpy, PyAV and PIL: about 0.3 s), reused by every later call,
so a call costs a few milliseconds more than decoding in-process. A call that overruns its
time limit kills the worker (SIGKILL) and raises ``VideoTimeoutError``; a worker that dies
raises ``VideoDecoderCrash``; the next call starts a new worker. Calls from several threads
of one process take turns on the one worker.

Sources: paths and ``s3://`` URIs (with any pyarrow ``filesystem``, pickled) are opened by
the worker; bytes are sent to it. A file object cannot cross processes, so the worker reads
it through the parent: each read is a request the parent serves while it waits, so only
the byte ranges the decoder needs are read. The time limit covers those reads too, but it
can only be checked between them: a read that blocks inside the file object blocks the
caller.

Memory: each call carries a memory limit (``decode_memory_limit(max_pixels)`` unless the
caller gives one), which the worker sets as its soft RLIMIT_DATA while it decodes and lifts
before it replies. RLIMIT_DATA, not RLIMIT_AS: it counts the heap and private writable
mappings (what decoding commits), not address space merely reserved (glibc arenas, shared
libraries), which is 2x the worker's real use at rest and grows with the machine's cores.
Allocations past the limit fail inside the worker and come back as ``VideoOutOfMemoryError``
(``stam_core.video.reading.translate_errors`` recognises them in all their forms); the worker is
then replaced, as after a timeout. A worker killed by SIGKILL that the caller did not send
(the kernel's or a cgroup's out-of-memory killer) is reported as out of memory too.
Measurements and the formula: docs/decoding.md ("Memory").

The worker dies with its parent (PR_SET_PDEATHSIG on Linux; it also exits when the socket
to the parent closes). The worker's side, the process ``python -m stam_core.video.decode_child``,
is ``stam_core.video.decode_child``; this module is the caller's side and never imports it.

State: the lock calls take turns on, the thread that launches workers and the worker itself
are made on first use (nothing is started or registered at import); a forked process drops
its parent's and makes its own. ``stop_worker`` ends this process's worker (the next call
starts a new one); ``worker_pid`` says which process it is.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from stam_core import errors
from stam_core.errors import (
    VideoDecoderCrash,
    VideoError,
    VideoOutOfMemoryError,
    VideoTimeoutError,
)
from stam_core.storage import source_kind
from stam_core.video.clip import source_name

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0  # a cold start on a loaded machine; not part of any call's limit
# The folder that holds the stam_core package: the worker must import this very copy of it.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

# decode_memory_limit: RLIMIT_DATA = BASE + PER_PIXEL x max_pixels, from the measurements in
# docs/decoding.md ("Memory"). Measured need of 8-bit 4:2:0 H.264 with 4 reference frames and
# B-frames: about 90 MiB + 19.5 bytes per coded pixel (248 MiB at 4K, 752 MiB at 8K). BASE
# covers the worker at rest (53 MiB of data) and the fixed part with room; PER_PIXEL is 2.5x
# the 8-bit need: 10-bit pictures take twice the bytes, and level 6.2 allows 6 reference
# pictures at 8K where the measured files had 4.
MEMORY_BASE = 256 << 20
MEMORY_PER_PIXEL = 48


def decode_memory_limit(max_pixels: int | None) -> int | None:
    """Bytes of data (RLIMIT_DATA) a decode worker may use when pictures have up to
    ``max_pixels`` pixels; None (no limit) when ``max_pixels`` is None."""
    if max_pixels is None:
        return None
    return MEMORY_BASE + MEMORY_PER_PIXEL * int(max_pixels)


# ---- parent side -------------------------------------------------------------------------

class _Worker:
    def __init__(self):
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        # The worker does no linear algebra, but numpy's OpenBLAS starts a thread per core at
        # import, each with ~41 MB of private memory (measured): 2.6 GB on 64 cores, all of it
        # counted by the memory limit. One thread.
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "stam_core.video.decode_child", str(child_end.fileno())]
        try:
            # Started from a thread that lives as long as the process: PR_SET_PDEATHSIG fires
            # when the *thread* that forked the child exits, not only when the process does.
            self.proc = _launcher().submit(subprocess.Popen, cmd, pass_fds=[child_end.fileno()], env=env,
                                           stdin=subprocess.DEVNULL).result()
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())
        if not self.conn.poll(STARTUP_TIMEOUT):
            self.kill()
            raise RuntimeError(f"the decode worker did not start within {STARTUP_TIMEOUT:.0f} s")
        try:
            self.conn.recv()  # ("ready", pid)
        except EOFError:
            self.kill()
            raise RuntimeError(f"the decode worker exited at start ({self._death()})") from None

    def request(self, message: tuple, name: str, timeout: float, fileobj: Any) -> Any:
        deadline = time.monotonic() + timeout
        try:
            self.conn.send(message)
        except OSError:  # it died since the last call
            raise self._died(name) from None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conn.poll(remaining):
                self.kill()
                raise VideoTimeoutError(name, f"decoding took longer than {timeout:g} s; the decoder was stopped")
            try:
                reply = self.conn.recv()
            except (EOFError, ConnectionResetError):
                raise self._died(name) from None
            kind = reply[0]
            if kind == "read":  # the worker reads a file object through us
                self.conn.send(_serve_read(fileobj, reply[1], reply[2]))
            elif kind == "ok":
                return reply[1]
            elif kind == "error":
                raise _rebuild(reply[1], reply[2], reply[3])
            else:  # "failed": an unexpected exception; the worker is still fine
                log.warning("decode worker failed on %s:\n%s", name, reply[2])
                raise VideoError(name, f"decoder failed: {reply[1]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def _died(self, name: str) -> VideoError:
        death = self._death()
        if self.proc.returncode == -signal.SIGKILL:
            # Only timeouts make us kill the worker, and those never get here: SIGKILL came
            # from the kernel's or a cgroup's out-of-memory killer (or an operator).
            return VideoOutOfMemoryError(name, f"the decoder process was killed ({death}), most likely for "
                                               "using too much memory")
        return VideoDecoderCrash(name, f"the decoder process died ({death})")

    def _death(self) -> str:
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:  # closed its end but still running: make sure
            self.proc.kill()
            code = self.proc.wait()
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"


_worker: _Worker | None = None  # this process's worker, started by the first call
# This process's lock and launcher thread, made by the first call (_launcher, _lock).
_state: dict[str, Any] = {}


def _lock() -> threading.Lock:
    return _process_state()[0]


def _launcher() -> concurrent.futures.ThreadPoolExecutor:
    return _process_state()[1]


def _process_state() -> tuple[threading.Lock, concurrent.futures.ThreadPoolExecutor]:
    made = _state.get("made")
    if made is None:
        # dict.setdefault is atomic: threads making them at once all get the first pair
        # stored (a ThreadPoolExecutor starts its thread on first submit, so a losing pair
        # costs nothing).
        made = _state.setdefault("made", (
            threading.Lock(), concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stam-decode-launcher")))
        token = object()
        if _state.setdefault("fork_hook", token) is token:  # once per interpreter; forks inherit it
            os.register_at_fork(after_in_child=_after_fork_in_child)
    return made


def _after_fork_in_child() -> None:
    # A forked copy starts its own worker; the lock and launcher thread did not survive.
    global _worker
    _state.pop("made", None)
    _worker = None


def call(op: str, source: Any, timeout: float, *, filesystem: Any = None, memory_limit: int | None = None,
         **kwargs) -> Any:
    """Run ``op`` ("read_clip" or "probe_video") on ``source`` in the worker, within ``timeout`` s
    and, unless ``memory_limit`` is None, ``memory_limit`` bytes of data (RLIMIT_DATA)."""
    global _worker
    name = source_name(source)
    spec, fileobj = _source_spec(source, filesystem)
    # S3 settings are read per call: the worker may predate them (credentials rotate, tests
    # start local servers).
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    message = ("call", op, spec, kwargs, name, aws, memory_limit)
    with _lock():
        if _worker is None or not _worker.alive():
            if _worker is not None:
                _worker.kill()  # died while idle: reap it
            try:
                _worker = _Worker()
            except (OSError, RuntimeError) as exc:
                raise VideoDecoderCrash(name, f"cannot start the decoder process: {exc}") from exc
        worker = _worker
        try:
            return worker.request(message, name, timeout, fileobj)
        except BaseException as exc:
            # A bad video leaves the worker fine. After a timeout or a crash it is dead; after
            # an interruption (Ctrl-C, a failing file object) it may be mid-reply; after running
            # out of memory its heap may be left fragmented and large: replace it.
            if not isinstance(exc, VideoError) or isinstance(
                    exc, (VideoTimeoutError, VideoDecoderCrash, VideoOutOfMemoryError)):
                worker.kill()
                _worker = None
            raise


def worker_pid() -> int | None:
    """The process id of this process's decode worker, None when none is running."""
    worker = _worker
    return worker.proc.pid if worker is not None and worker.alive() else None


def stop_worker() -> None:
    """End this process's decode worker, if any; the next call starts a fresh one (which reads
    the environment, e.g. PYTHONPATH, as it is then)."""
    global _worker
    with _lock():
        worker, _worker = _worker, None
    if worker is not None:
        worker.kill()


def _source_spec(source: Any, filesystem: Any) -> tuple[tuple, Any]:
    kind = source_kind(source, filesystem)  # raises TypeError for anything else
    if kind == "path":
        return ("path", os.path.abspath(os.fspath(source))), None  # the worker's cwd may differ
    if kind in ("uri", "s3_exact_key"):
        return ("uri", source, pickle.dumps(filesystem) if filesystem is not None else None), None
    if kind == "bytes":
        return ("bytes", bytes(source)), None
    try:
        size = source.seek(0, os.SEEK_END)
    except (OSError, ValueError) as exc:
        raise TypeError(f"file object sources must be seekable ({exc})") from exc
    return ("file", size), source


def _serve_read(fileobj: Any, offset: int, size: int) -> tuple:
    try:
        fileobj.seek(offset)
        return ("data", fileobj.read(size))
    except OSError as exc:
        return ("data_error", str(exc))


def _rebuild(cls_name: str, source: str, reason: str) -> VideoError:
    cls = getattr(errors, cls_name, VideoError)
    return cls(source, reason) if isinstance(cls, type) and issubclass(cls, VideoError) else VideoError(source, reason)
