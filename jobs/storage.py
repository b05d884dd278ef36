"""Where videos and labels live: the one storage layer for paths, URIs and S3.

URIs: ``is_s3``/``split_s3``/``s3_path`` are the only spellings of "is this S3, which bucket and
key"; ``local_key``/``local_path`` spell local files; ``resolve`` gives a filesystem and a path.

Three S3 clients, each for what it does best, all configured from the same standard AWS
settings (environment, profiles, instance roles; ``AWS_ENDPOINT_URL`` for a local or other
S3-compatible server, read once by ``stam_core.storage.s3_endpoint_and_region``):

- pyarrow (``resolve``, ``s3_filesystem``): streaming whole files (plans, run records, Parquet,
  the decoder's reads in stam_core), with deliberate retries and timeouts.
- boto3 (``s3_client``): listing and stat'ing (ListObjectsV2 pages, HeadObject), and reading
  keys exactly as listed: pyarrow rewrites keys with ``./``, ``../`` or ``//`` components
  (``stam_core.storage.pyarrow_reads_key_exactly``), boto3 sends them as they are.
- delta-rs (``delta_storage_options``): the Delta table's own object store; only non-secret
  options (endpoint, region, conditional put) are given, credentials come from its AWS chain.

Presigned links (jobs/tools/report/links.py) are signed locally by a boto3 client of their own
(SigV4, quiet logs: the URLs carry signatures); the demo's server admin is jobs/tools/demo_s3.py.
"""
from __future__ import annotations

import os
from urllib.parse import quote, unquote_to_bytes, urlparse

import pyarrow.fs as pafs

from stam_core.storage import (  # the one S3 configuration and local write
    S3_SCHEME,
    is_s3_uri,
    s3_endpoint_and_region,
    s3_filesystem,
    write_atomic,
)

DEFAULT_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)


class StorageError(Exception):
    """Input or output storage that cannot be used at all (the run cannot start)."""


S3_CONNECT_TIMEOUT_S = 10
S3_READ_TIMEOUT_S = 60
S3_MAX_ATTEMPTS = 8
S3_MAX_CONNECTIONS = 16  # as many as the concurrent HeadObject requests of a stat batch
_CLIENTS: dict[tuple, object] = {}


def is_s3(uri: str) -> bool:
    """Whether ``uri`` is an ``s3://`` URI."""
    return is_s3_uri(uri)


def s3_path(uri: str) -> str:
    """``bucket/key`` of an ``s3://`` URI: how pyarrow's S3 filesystem names it."""
    return uri[len(S3_SCHEME):]


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI, the key exactly as written."""
    bucket, _, key = s3_path(uri).partition("/")
    return bucket, key


def s3_client():
    """A boto3 S3 client from this process's AWS environment (one per configuration)."""
    import boto3
    from botocore.config import Config

    endpoint, region = s3_endpoint_and_region()
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    if key not in _CLIENTS:
        config = Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_READ_TIMEOUT_S,
                        retries={"mode": "standard", "max_attempts": S3_MAX_ATTEMPTS},
                        max_pool_connections=S3_MAX_CONNECTIONS)
        _CLIENTS[key] = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                                       config=config)
    return _CLIENTS[key]


def delta_storage_options(uri: str) -> dict[str, str] | None:
    """Non-secret S3 settings for delta-rs (None for a local table); credentials come from its own AWS chain."""
    if not is_s3(uri):
        return None
    options = {"conditional_put": "etag"}  # safe concurrent commits on any S3-compatible store
    endpoint, region = s3_endpoint_and_region()
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if urlparse(endpoint).scheme == "http":
            options["AWS_ALLOW_HTTP"] = "true"
    if region:
        options["AWS_REGION"] = region
    return options


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
        return s3_filesystem(), s3_path(uri).rstrip("/")
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


def fs_path(uri: str) -> str:
    """The path in ``resolve``'s filesystem of a file URI that delta-rs gives (s3://, file:// or a path)."""
    if is_s3(uri):
        return s3_path(uri)
    if uri.startswith("file://"):
        return urlparse(uri).path
    return uri
