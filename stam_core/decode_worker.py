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
(``stam_core.video._translate_errors`` recognises them in all their forms); the worker is
then replaced, as after a timeout. A worker killed by SIGKILL that the caller did not send
(the kernel's or a cgroup's out-of-memory killer) is reported as out of memory too.
Measurements and the formula: docs/decoding.md ("Memory").

The worker dies with its parent (PR_SET_PDEATHSIG on Linux; it also exits when the socket
to the parent closes). Test hook: with ``STAM_DECODE_TEST_FAULT=hang`` (spin holding the
GIL), ``=crash`` (SIGSEGV) or ``=oom_kill`` (SIGKILL, as the out-of-memory killer sends) in
the caller's environment, the worker misbehaves on purpose.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from stam_core.errors import (
    VideoDecoderCrash,
    VideoError,
    VideoOutOfMemoryError,
    VideoTimeoutError,
)

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0  # a cold start on a loaded machine; not part of any call's limit
FAULT_ENV = "STAM_DECODE_TEST_FAULT"
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)

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
        cmd = [sys.executable, "-m", "stam_core.decode_worker", str(child_end.fileno())]
        try:
            # Started from a thread that lives as long as the process: PR_SET_PDEATHSIG fires
            # when the *thread* that forked the child exits, not only when the process does.
            self.proc = _LAUNCHER.submit(subprocess.Popen, cmd, pass_fds=[child_end.fileno()], env=env,
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


_LAUNCHER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stam-decode-launcher")
_lock = threading.Lock()
_worker: _Worker | None = None


def _after_fork_in_child() -> None:
    # A forked copy starts its own worker; the lock and launcher thread did not survive.
    global _LAUNCHER, _lock, _worker
    _LAUNCHER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stam-decode-launcher")
    _lock = threading.Lock()
    _worker = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def call(op: str, source: Any, timeout: float, *, filesystem: Any = None, memory_limit: int | None = None,
         **kwargs) -> Any:
    """Run ``op`` ("read_clip" or "probe_video") on ``source`` in the worker, within ``timeout`` s
    and, unless ``memory_limit`` is None, ``memory_limit`` bytes of data (RLIMIT_DATA)."""
    from stam_core.video import source_name

    global _worker
    name = source_name(source)
    spec, fileobj = _source_spec(source, filesystem)
    # S3 settings are read per call: the worker may predate them (credentials rotate, tests
    # start local servers).
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    message = ("call", op, spec, kwargs, name, aws, os.environ.get(FAULT_ENV), memory_limit)
    with _lock:
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


def _source_spec(source: Any, filesystem: Any) -> tuple[tuple, Any]:
    if isinstance(source, Path) or isinstance(source, str) and not source.startswith("s3://") and filesystem is None:
        return ("path", os.path.abspath(os.fspath(source))), None  # the worker's cwd may differ
    if isinstance(source, str):
        return ("uri", source, pickle.dumps(filesystem) if filesystem is not None else None), None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(source)), None
    if all(hasattr(source, attr) for attr in ("read", "seek", "tell")):
        try:
            size = source.seek(0, os.SEEK_END)
        except (OSError, ValueError) as exc:
            raise TypeError(f"file object sources must be seekable ({exc})") from exc
        return ("file", size), source
    raise TypeError(f"unsupported video source {type(source).__name__}: "
                    "use a path, s3:// URI, bytes or a seekable binary file object")


def _serve_read(fileobj: Any, offset: int, size: int) -> tuple:
    try:
        fileobj.seek(offset)
        return ("data", fileobj.read(size))
    except OSError as exc:
        return ("data_error", str(exc))


def _rebuild(cls_name: str, source: str, reason: str) -> VideoError:
    from stam_core import errors

    cls = getattr(errors, cls_name, VideoError)
    return cls(source, reason) if isinstance(cls, type) and issubclass(cls, VideoError) else VideoError(source, reason)


# ---- worker side -------------------------------------------------------------------------

class _RemoteFile:
    """A read-only file whose bytes live in the parent's file object."""

    def __init__(self, conn: Connection, size: int):
        self.conn, self.size, self.pos = conn, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        if n <= 0:
            return b""
        self.conn.send(("read", self.pos, n))
        kind, payload = self.conn.recv()
        if kind != "data":
            raise OSError(f"reading the caller's file object failed: {payload}")
        self.pos += len(payload)
        return payload

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)


def _misbehave(fault: str | None) -> None:
    if fault == "hang":
        import re

        # Catastrophic backtracking: runs in C for ages and never releases the GIL, like a
        # native decoder hang.
        re.match(r"(a+)+$", "a" * 64 + "b")
    elif fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "oom_kill":
        os.kill(os.getpid(), signal.SIGKILL)


def _limit_memory(limit: int | None) -> None:
    """Set (or, with None, lift) the soft data limit. The hard limit is left alone, so the
    worker can always raise the soft one again for the next call."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    soft = hard if limit is None else (limit if hard == resource.RLIM_INFINITY else min(limit, hard))
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def main(fd: int) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, which then stops us
    conn = Connection(fd)
    from stam_core import video

    video.CPU_CLOCK = time.process_time  # Clip.decode_cpu_ms: decoding is all this process does
    ops = {"read_clip": video._read_clip, "probe_video": video._probe_video}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            _, op, spec, kwargs, name, aws, fault, memory_limit = conn.recv()
        except EOFError:
            return  # the parent is gone
        for key in [k for k in os.environ if k.startswith("AWS_") and k not in aws]:
            del os.environ[key]
        os.environ.update(aws)
        _misbehave(fault)
        try:
            if spec[0] == "file":
                source = _RemoteFile(conn, spec[1])
            elif spec[0] == "uri":
                source = spec[1]
                kwargs["filesystem"] = pickle.loads(spec[2]) if spec[2] is not None else None
            else:
                source = spec[1]
            _limit_memory(memory_limit)
            try:
                reply = ("ok", ops[op](source, name=name, **kwargs))
            finally:
                # Replying (pickling 2.4 MB of frames) is not decoding: never fail it for memory.
                _limit_memory(None)
        except VideoError as exc:
            reply = ("error", type(exc).__name__, exc.source, exc.reason)
        except MemoryError as exc:  # outside the readers' own translation (e.g. opening a source)
            reply = ("error", VideoOutOfMemoryError.__name__, name, f"out of memory ({exc or type(exc).__name__})")
        except Exception as exc:  # anything else is reported to the caller; the worker carries on
            reply = ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        conn.send(reply)


if __name__ == "__main__":
    main(int(sys.argv[1]))
