"""Opening a source for a decoder (paths, ``s3://`` URIs, bytes, file objects) and naming
what FFmpeg or the system said as a ``VideoError``. Used by the readers. Must not import torch.
"""
from __future__ import annotations

import errno
import io
import os
from typing import Any

from stam_core.errors import (
    VideoError,
    VideoFormatError,
    VideoNotFoundError,
    VideoOutOfMemoryError,
    VideoReadError,
)
from stam_core.storage import s3_filesystem, source_kind
from stam_core.video.clip import Source

REMOTE_BUFFER = 1 << 20  # bytes per read from S3: one ranged GET each, so not too small
LOCAL_BUFFER = 1 << 16


def open_input(name: str, source: Source, filesystem: Any) -> tuple[Any, int | None, int]:
    """(what av.open / decord take, size in bytes if known, read buffer size)."""
    kind = source_kind(source, filesystem)  # raises TypeError for anything else
    if kind == "bytes":
        data = bytes(source)
        return io.BytesIO(data), len(data), LOCAL_BUFFER
    if kind == "path":
        path = os.fspath(source)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise VideoNotFoundError(name, "no such file") from None
        except OSError as exc:
            raise VideoReadError(name, f"cannot read: {exc.strerror or exc}") from exc
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            # Not valid UTF-8 (os.fsdecode left surrogate escapes): FFmpeg and decord take
            # UTF-8 names only, so open it here (Python encodes it back to the exact bytes)
            # and let them read a file object.
            try:
                return open(path, "rb"), size, LOCAL_BUFFER
            except OSError as exc:
                raise VideoReadError(name, f"cannot read: {exc.strerror or exc}") from exc
        return path, size, LOCAL_BUFFER
    if kind in ("uri", "s3_exact_key"):  # a key pyarrow changes is the caller's to avoid (jobs does)
        return _open_remote(name, source, filesystem)
    try:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
    except (OSError, ValueError) as exc:
        raise VideoReadError(name, f"file object is not seekable: {exc}") from exc
    return source, size, LOCAL_BUFFER


def _open_remote(name: str, uri: str, filesystem: Any) -> tuple[Any, int, int]:
    import pyarrow.fs as pafs

    if filesystem is None:
        filesystem = s3_filesystem()
    path = uri[len("s3://"):] if uri.startswith("s3://") else uri
    try:
        f = filesystem.open_input_file(path)
        return f, f.size(), REMOTE_BUFFER if isinstance(filesystem, pafs.S3FileSystem) else LOCAL_BUFFER
    except FileNotFoundError:
        raise VideoNotFoundError(name, "no such object") from None
    except OSError as exc:
        if "does not exist" in str(exc) or "NoSuchKey" in str(exc) or "NoSuchBucket" in str(exc):
            raise VideoNotFoundError(name, f"no such object ({exc})") from None
        raise VideoReadError(name, f"cannot open: {exc}") from exc


def ffmpeg_error(name: str, exc: Exception, doing: str) -> VideoError:
    """The ``VideoError`` that an FFmpeg or I/O error met while ``doing`` something stands for."""
    import av

    message = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
        return VideoOutOfMemoryError(name, f"{doing}: out of memory ({message})")
    if isinstance(exc, av.error.FileNotFoundError):
        return VideoNotFoundError(name, "no such file")
    if isinstance(exc, (av.error.PermissionError, av.error.EOFError)) or isinstance(exc, OSError) and not isinstance(
            exc, av.error.FFmpegError):
        return VideoReadError(name, f"{doing}: {message}")
    return VideoFormatError(name, f"{doing}: {message}")
