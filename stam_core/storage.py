"""Where bytes live: the one S3 configuration (``s3_filesystem``), the test for an ``s3://`` URI
(``is_s3_uri``) and the one atomic local write (``atomic_output``), for stam_core and for jobs,
which imports them (jobs/storage.py is its storage layer on top).

pyarrow, not boto3: stam_core stays free of the AWS SDK. The endpoint variables are the
standard ones boto3 reads too, so a local S3 server works for both. Must not import torch.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

S3_SCHEME = "s3://"
_S3: dict[tuple, Any] = {}
S3_MAX_ATTEMPTS = 10
S3_CONNECT_TIMEOUT_S = 10.0
S3_REQUEST_TIMEOUT_S = 60.0


def is_s3_uri(source: object) -> bool:
    """Whether ``source`` is an ``s3://`` URI (a str; paths, bytes and file objects are not)."""
    return isinstance(source, str) and source.startswith(S3_SCHEME)


def s3_endpoint_and_region() -> tuple[str | None, str | None]:
    """The S3 endpoint (a local or other S3-compatible server) and region from the standard AWS variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return endpoint or None, region or None


def s3_filesystem():
    """A pyarrow S3FileSystem from the standard AWS environment (AWS_ENDPOINT_URL for local servers)."""
    import pyarrow.fs as pafs

    endpoint, region = s3_endpoint_and_region()
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    if key not in _S3:  # one per configuration: creating it resolves credentials
        kwargs: dict[str, Any] = {}
        if endpoint:
            parsed = urlparse(endpoint)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
        if region:
            kwargs["region"] = region
        # The AWS SDK's defaults (3 attempts, a request timeout of a few seconds) fail a read
        # during an ordinary burst of 503 SlowDown or a slow answer: be deliberate about both.
        _S3[key] = pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
                                     connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
                                     **kwargs)
    return _S3[key]


def source_kind(source: object, filesystem: Any = None) -> str:
    """How a video source is opened: the one classifier of stam_core's decoders, its decode
    worker and jobs' decode stages.

    ``"path"``: a local path (a ``Path``, or a str that is not ``s3://`` when no filesystem
    is given). ``"uri"``: read through a pyarrow filesystem (``s3://``, or any str with one).
    ``"s3_exact_key"``: an ``s3://`` URI whose key pyarrow would change
    (``pyarrow_reads_key_exactly``): it must be read by a client that sends the key as it is
    and handed over as a file object (jobs does so with boto3). ``"bytes"``; ``"file"``: a
    seekable binary file object. Anything else raises ``TypeError``.
    """
    if isinstance(source, Path) or (isinstance(source, str) and not is_s3_uri(source) and filesystem is None):
        return "path"
    if isinstance(source, str):
        exact = filesystem is not None or pyarrow_reads_key_exactly(source[len(S3_SCHEME):])
        return "uri" if exact else "s3_exact_key"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    if all(hasattr(source, attr) for attr in ("read", "seek", "tell")):
        return "file"
    raise TypeError(f"unsupported video source {type(source).__name__}: "
                    "use a path, s3:// URI, bytes or a seekable binary file object")


def pyarrow_reads_key_exactly(path: str) -> bool:
    """Whether pyarrow's S3FileSystem addresses ``bucket/key`` exactly.

    It does not for keys with an empty, ``.`` or ``..`` path component (``a//b.mp4``,
    ``a/./b.mp4``, ``a/../b.mp4``): it refuses the empty one and its HTTP layer collapses
    the others, so it would ask S3 for another key (measured: ``a/./b.mp4`` became a HEAD of
    ``a/b.mp4``). Such keys are valid S3 keys: read them with a client that sends the key
    as it is (jobs reads them through boto3 and hands the decoder a file object).
    """
    return not any(part in ("", ".", "..") for part in path.split("/"))


MKDIR_TRIES = 3


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file whose bytes appear at ``path`` all at once when the block ends, never half.

    A temporary file in the same folder, flushed to disk, then renamed over ``path`` (atomic on
    POSIX): a reader sees the old file or the whole new one. On an error nothing is published.
    """
    path = Path(path)
    for attempt in range(MKDIR_TRIES):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # once the temporary file is in it, the folder is not empty and stays
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            break
        except FileNotFoundError:  # an empty folder removed meanwhile (another run's write probe cleaning up)
            if attempt == MKDIR_TRIES - 1:
                raise
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the rename must not publish data still in flight
        os.chmod(tmp_name, mode)  # mkstemp makes 0600
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)  # gone already after the rename


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to the local ``path`` with ``atomic_output``."""
    with atomic_output(path) as f:
        f.write(data)
