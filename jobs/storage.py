"""Where videos and labels live: local folders and S3, both through pyarrow.fs.

S3 uses the standard AWS configuration (environment, profiles, instance roles); a local or
other S3-compatible server is reached through ``AWS_ENDPOINT_URL``. Credentials are never
logged: only the names of the settings forwarded to Ray workers are.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from stam_core.storage import s3_filesystem  # the one S3 configuration

DEFAULT_EXTENSIONS = (
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)

# Settings that make S3 work the same on every Ray worker as on the driver.
AWS_SETTINGS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
)


class StorageError(Exception):
    """Input or output storage that cannot be used at all (the run cannot start)."""


@dataclass(frozen=True)
class VideoRef:
    """One input video. ``version`` changes whenever the object's bytes may have changed."""

    uri: str
    size: int | None
    version: str | None  # "size:mtime_ns"; None when the object could not be found


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def aws_settings() -> dict[str, str]:
    return {k: os.environ[k] for k in AWS_SETTINGS if k in os.environ}


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


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    return f"s3://{path}" if isinstance(fs, pafs.S3FileSystem) else path


def _ref(fs: pafs.FileSystem, info: pafs.FileInfo) -> VideoRef:
    uri = to_uri(fs, info.path)
    if info.type != pafs.FileType.File:
        return VideoRef(uri, None, None)
    mtime = info.mtime_ns if info.mtime_ns is not None else 0
    return VideoRef(uri, info.size, f"{info.size}:{mtime}")


MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")


def list_videos(input_uri: str, extensions=DEFAULT_EXTENSIONS) -> list[VideoRef]:
    """Videos under a folder/prefix (recursive), or the ones a manifest file names.

    Only prefix-scoped requests: a listing, never a HEAD of the prefix itself, which a
    least-privilege S3 policy (ListBucket limited to the prefix) answers with 403.
    """
    fs, path = resolve(input_uri)
    if path.lower().endswith(MANIFEST_EXTENSIONS):
        return _list_manifest(fs, path, input_uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot list input ({_short(exc)})") from exc
    if not infos and not (isinstance(fs, pafs.S3FileSystem) or os.path.isdir(path)):
        raise StorageError(f"{input_uri}: input does not exist")
    exts = tuple(e.lower() for e in extensions)
    refs = [_ref(fs, i) for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(exts)]
    return sorted(refs, key=lambda r: r.uri)


def _list_manifest(fs: pafs.FileSystem, path: str, input_uri: str) -> list[VideoRef]:
    try:
        uris = read_manifest_uris(fs, path, input_uri)
    except FileNotFoundError as exc:
        raise StorageError(f"{input_uri}: manifest does not exist") from exc
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot read manifest ({_short(exc)})") from exc
    if isinstance(fs, pafs.LocalFileSystem):
        # Relative paths in a local manifest are relative to the manifest's folder.
        base = os.path.dirname(path)
        uris = [u if is_s3(u) else os.path.join(base, u) for u in uris]
    by_fs: dict[bool, list[str]] = {}
    for uri in uris:
        by_fs.setdefault(is_s3(uri), []).append(uri)
    refs = []
    for s3, group in by_fs.items():
        gfs = s3_filesystem() if s3 else pafs.LocalFileSystem()
        paths = [u[len("s3://"):] if s3 else os.path.abspath(u) for u in group]
        try:
            infos = gfs.get_file_info(paths)
        except OSError as exc:
            raise StorageError(f"{input_uri}: cannot stat listed videos ({_short(exc)})") from exc
        # Keep the URI as the manifest wrote it for S3; local paths become absolute.
        for uri, info in zip(group, infos):
            ref = _ref(gfs, info)
            refs.append(VideoRef(uri if s3 else ref.uri, ref.size, ref.version))
    return refs


def read_manifest_uris(fs: pafs.FileSystem, path: str, input_uri: str) -> list[str]:
    """URIs from a .txt (one per line), .csv or .parquet (a ``video_uri`` column) manifest."""
    lower = path.lower()
    if lower.endswith(".parquet"):
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
        if "video_uri" not in table.column_names:
            raise StorageError(f"{input_uri}: manifest has no 'video_uri' column")
        uris = table.column("video_uri").to_pylist()
    else:
        with fs.open_input_stream(path) as f:
            text = f.read().decode("utf-8-sig")
        if lower.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and "video_uri" not in rows[0]:
                raise StorageError(f"{input_uri}: manifest has no 'video_uri' column")
            uris = [r["video_uri"] for r in rows]
        else:
            uris = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    seen, out = set(), []
    for uri in (u.strip() for u in uris if u):
        if uri and uri not in seen:
            seen.add(uri)
            out.append(uri)
    return out


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]
