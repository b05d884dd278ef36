"""The decode worker process, ``python -m stam_core.video.decode_child FD``: runs ``read_clip`` and
``probe_video`` for the caller at the other end of the socket FD, in this process's own time
and memory (the caller's side and the protocol: ``stam_core.video.decode_worker``).

Requests are ``("call", op, source spec, kwargs, name, AWS_* settings, memory limit)``;
replies ``("ok", result)``, ``("error", VideoError class name, source, reason)`` or
``("failed", description, traceback)``, and, while reading a caller's file object,
``("read", offset, size)`` requests that the caller answers with ``("data", bytes)`` or
``("data_error", why)``. Must not import torch.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection

from stam_core.errors import VideoError, VideoOutOfMemoryError
from stam_core.video import reading


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
    reading.CPU_CLOCK = time.process_time  # Clip.decode_cpu_ms: decoding is all this process does
    ops = {"read_clip": reading.read_clip_here, "probe_video": reading.probe_here}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            _, op, spec, kwargs, name, aws, memory_limit = conn.recv()
        except EOFError:
            return  # the parent is gone
        for key in [k for k in os.environ if k.startswith("AWS_") and k not in aws]:
            del os.environ[key]
        os.environ.update(aws)
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
