"""Where videos and labels live: local folders and S3, both through pyarrow.fs.

S3 uses the standard AWS configuration (environment, profiles, instance roles); a local or
other S3-compatible server is reached through ``AWS_ENDPOINT_URL``. Listing is jobs/listing/
(Ray tasks); this module spells keys (``local_key``/``local_path``) and resolves filesystems.
"""
from __future__ import annotations

import os
from urllib.parse import quote, unquote_to_bytes

import pyarrow.fs as pafs

from stam_core.storage import (  # the one S3 configuration and local write
    s3_filesystem,
    write_atomic,
)

DEFAULT_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)


class StorageError(Exception):
    """Input or output storage that cannot be used at all (the run cannot start)."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_key(path: str | bytes, base: str | bytes | None = None) -> str:
    """The one spelling of a local file as a ``video_uri``.

    The path is made absolute (relative to ``base``, else the working directory) and
    normalised (``os.path.normpath``). A path that is valid UTF-8 stays a plain absolute
    path; any other (a name that is not UTF-8) becomes ``file://`` plus its raw bytes
    percent-encoded, so no plain key ever starts with ``file://``. ``file://`` input is
    decoded first, so both spellings of one file give one key.
    """
    if isinstance(path, str) and path.startswith("file://"):
        raw = _file_uri_bytes(path)
    else:
        raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raw = os.path.join(os.fsencode(base) if base is not None else os.fsencode(os.getcwd()), raw)
    raw = os.path.normpath(raw)
    if raw.startswith(b"//"):  # normpath keeps a leading "//" (POSIX leaves it open); one file, one key
        raw = b"/" + raw.lstrip(b"/")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "file://" + quote(raw, safe="/")


def local_path(video_uri: str) -> str:
    """What ``open()`` / ``stam_core.read_clip`` take for a ``video_uri``.

    ``file://`` URIs (local names that are not UTF-8) become ``os.fsdecode`` of their
    bytes (a str with surrogate escapes); plain paths and s3:// URIs pass through unchanged.
    """
    if video_uri.startswith("file://"):
        return os.fsdecode(_file_uri_bytes(video_uri))
    return video_uri


def _file_uri_bytes(uri: str) -> bytes:
    rest = uri[len("file://"):]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost"):]
    if not rest.startswith("/"):
        raise StorageError(f"{uri}: a file:// URI needs an absolute path (file:///...)")
    return unquote_to_bytes(rest)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and the path inside it for a local path, a file:// URI or an s3:// URI."""
    if is_s3(uri):
        return s3_filesystem(), uri[len("s3://"):].rstrip("/")
    if uri.startswith("file://"):
        return pafs.LocalFileSystem(), local_path(uri)
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported storage scheme (use a local path or s3://)")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def put_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Publish a whole file at once: an atomic rename locally, one upload on S3 (visible when complete)."""
    if isinstance(fs, pafs.LocalFileSystem):
        write_atomic(path, data)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)

