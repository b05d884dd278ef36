"""Archive-scale listing of the input videos as a Ray Dataset: the driver never holds them all.

    list_source(INPUT) -> ray.data.Dataset with LISTING_SCHEMA:
        video_uri       string, non-null: the key (see below)
        source_size     int64 (null when unknown)
        source_version  string ("size:mtime_ns" for what is stat'ed or listed here)
        error_kind      string (null for a listed video)
        error           string ("<video_uri>: <reason>"; null for a listed video)

INPUT is one of
  * a local folder: walked recursively, files picked by extension (case-insensitive);
  * an ``s3://bucket/prefix``: every key under ``prefix/``, picked by extension;
  * a manifest, ``.txt`` (one URI per line, ``#`` comments), ``.csv`` or ``.parquet`` (a
    ``video_uri`` column, optionally ``size`` and ``source_version``), local or on S3;
  * an S3 Inventory ``manifest.json`` (local or on S3) whose CSV(.gz) or Parquet data files
    are read from the inventory's destination bucket.

Keys. S3 URIs are kept exactly as listed or written (``./``, ``../`` and ``//`` in keys are
parts of the key). Local paths are made absolute (relative ones in a local manifest are
relative to the manifest's folder) and ``os.path.normpath``-ed; a path that is not valid UTF-8
becomes ``file://`` + its bytes percent-encoded (``storage.local_key``); ``local_path``
turns any key back into what ``open()`` takes.

Error rows (error_kind), each naming the input and the reason:
  not_found     missing file/object named by a manifest, broken symbolic link
  not_a_file    a directory, FIFO, socket or device whose name matches an extension, a
                symbolic link loop (a directory named ``x.mp4`` is still walked)
  read_error    stat refused (permission denied, S3 403 or another S3 error)
  list_error    a folder or prefix that could not be listed (the row's key is the folder)
  not_allowed   a local path in a manifest stored in S3 (needs allow_local_paths=True)
  invalid_uri   unsupported scheme, ``s3://`` without bucket or key, a relative local path in
                an S3 manifest, an s3:// URI that is not UTF-8

How the work is spread (nothing proportional to the archive is on the driver):
  * folder / prefix: one or two "split" levels (a shallow listing: ``os.scandir`` or an S3
    delimiter listing, ``Delimiter="/"``) find sub-folders, each level a Ray Data stage whose
    output is materialized in the object store (not on the driver); then every sub-folder
    left is walked recursively by a Ray task (~1000 rows per output table). The split levels
    run when ``list_source`` is called; the walks are lazy. A second split level runs only
    when the first found fewer than SPLIT_TARGET sub-folders.
  * manifests are read by Ray Data (``read_binary_files`` for .txt, so raw non-UTF-8 bytes
    survive; ``read_csv`` with video_uri read as binary; ``read_parquet``), normalised,
    de-duplicated and stat'ed in batches of STAT_BATCH on workers (boto3 HeadObject in a
    small thread pool / ``os.stat``), unless the manifest has a ``source_version`` column,
    which is then used as it is (with ``size``, if present) and nothing is stat'ed.
  * de-duplication (manifests only; folder and prefix listings are unique by construction,
    inventory keys are unique per report): a hash shuffle of the rows on ``video_uri``
    (``repartition(keys=...)``) and a per-block pyarrow group-by. Cost: one all-to-all
    exchange of the manifest's rows (~100 bytes each) through the object store, a barrier
    before the stat stage; it spills to disk when larger than object-store memory.

S3 access is boto3 with the standard AWS environment (``AWS_ENDPOINT_URL`` etc.), created on
each worker from the environment it inherits. Only prefix-scoped requests are made:
ListObjectsV2 with ``prefix`` = the input prefix + "/" (or below), HeadObject/GetObject of
objects; never a HEAD of the bucket or of the prefix itself.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat as statmod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.compute as pc

from jobs.storage import DEFAULT_EXTENSIONS, StorageError, is_s3, local_key, local_path

__all__ = ["LISTING_SCHEMA", "list_source", "local_key", "local_path"]

LISTING_SCHEMA = pa.schema([
    pa.field("video_uri", pa.string(), nullable=False),
    pa.field("source_size", pa.int64()),
    pa.field("source_version", pa.string()),
    pa.field("error_kind", pa.string()),
    pa.field("error", pa.string()),
])
_DIR = "_dir"  # split stages: a sub-folder still to list (then video_uri is "")
_SPLIT_SCHEMA = LISTING_SCHEMA.append(pa.field(_DIR, pa.string()))

MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")
INVENTORY_NAME = "manifest.json"
SPLIT_LEVELS = 2  # shallow listings before the recursive walks
SPLIT_TARGET = 64  # enough sub-folders to stop splitting (at least 4 per CPU, see _split_target)
MAX_LIST_TASKS = 512  # folders are grouped into at most this many walk tasks
ROWS_PER_TABLE = 1000  # a walk yields a table per this many rows (S3: per page)
STAT_BATCH = 256  # manifest entries stat'ed per batch
STAT_THREADS = 16  # concurrent HeadObject requests per batch
S3_LIST_CPUS = 0.25  # S3 listing waits on the network; local listing takes a whole CPU


# ---- entry point -------------------------------------------------------------------------------
def list_source(input_uri: str, *, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
                allow_local_paths: bool = False):
    """The videos INPUT names, as a lazy Ray Dataset with LISTING_SCHEMA (not sorted).

    Raises StorageError (one line naming the input) when the input itself cannot be used:
    a folder that does not exist, a manifest that cannot be read or lacks ``video_uri``, an
    S3 bucket that does not exist or refuses the listing. Checked before any Ray work.
    """
    exts = tuple(e.lower() for e in extensions)
    lower = input_uri.lower()
    if lower.rstrip("/").rsplit("/", 1)[-1] == INVENTORY_NAME:
        return _inventory(input_uri, exts)
    if lower.endswith(MANIFEST_EXTENSIONS):
        return _manifest(input_uri, allow_local_paths)
    if is_s3(input_uri):
        bucket, prefix = _split_s3(input_uri)
        if not bucket:
            raise StorageError(f"{input_uri}: no bucket in the S3 URI")
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        _check_s3_prefix(input_uri, bucket, prefix)
        return _tree(f"s3://{bucket}/{prefix}", exts, S3_LIST_CPUS)
    if "://" in input_uri and not input_uri.startswith("file://"):
        raise StorageError(f"{input_uri}: unsupported storage scheme (use a local path or s3://)")
    root = local_key(input_uri)
    path = local_path(root)
    if not os.path.isdir(path):
        why = "is not a folder" if os.path.exists(path) else "does not exist"
        raise StorageError(f"{input_uri}: input {why}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise StorageError(f"{input_uri}: input folder is not readable (permission denied)")
    return _tree(root, exts, 1.0)


# ---- rows --------------------------------------------------------------------------------------
class _Rows:
    """Columns of LISTING_SCHEMA (plus _dir in split stages) built row by row."""

    def __init__(self, split: bool = False):
        self.split = split
        self.cols: dict[str, list] = {f.name: [] for f in (_SPLIT_SCHEMA if split else LISTING_SCHEMA)}

    def __len__(self) -> int:
        return len(self.cols["video_uri"])

    def add(self, uri: str, size=None, version=None, kind=None, error=None) -> None:
        for key, value in (("video_uri", uri), ("source_size", size), ("source_version", version),
                           ("error_kind", kind), ("error", error)):
            self.cols[key].append(value)
        if self.split:
            self.cols[_DIR].append(None)

    def fail(self, uri: str, kind: str, reason: str) -> None:
        self.add(uri, kind=kind, error=f"{uri}: {reason}")

    def add_dir(self, dir_key: str) -> None:
        self.add("")
        self.cols[_DIR][-1] = dir_key

    def take(self) -> pa.Table:
        table = pa.table(self.cols, schema=_SPLIT_SCHEMA if self.split else LISTING_SCHEMA)
        for values in self.cols.values():
            values.clear()
        return table


def _empty() -> pa.Table:
    return LISTING_SCHEMA.empty_table()


# ---- folder and prefix: split levels, then recursive walks ------------------------------------
def _tree(root: str, exts: tuple[str, ...], cpus: float):
    import ray

    frontier = ray.data.from_items([{_DIR: root}])
    parts = []
    target = _split_target()
    for level in range(SPLIT_LEVELS):
        count = frontier.count()
        if count == 0 or (level > 0 and count >= target):
            break
        mixed = (frontier.repartition(min(count, MAX_LIST_TASKS))
                 .map_batches(_split_batch, batch_size=1, batch_format="pyarrow", num_cpus=cpus,
                              fn_kwargs={"exts": exts})
                 .materialize())
        parts.append(mixed.map_batches(_final_rows, batch_size=None, batch_format="pyarrow"))
        frontier = mixed.map_batches(_dir_rows, batch_size=None, batch_format="pyarrow").materialize()
    count = frontier.count()
    if count:
        parts.append(frontier.repartition(min(count, MAX_LIST_TASKS))
                     .map_batches(_walk_batch, batch_size=1, batch_format="pyarrow", num_cpus=cpus,
                                  fn_kwargs={"exts": exts}))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _split_target() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(SPLIT_TARGET, 4 * cpus)


def _final_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table[_DIR])).drop_columns([_DIR])


def _dir_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table[_DIR])).select([_DIR])


def _split_batch(batch: pa.Table, *, exts) -> pa.Table:
    """Shallow listing of each folder/prefix: its matching files and its sub-folders."""
    rows = _Rows(split=True)
    for dir_key in batch[_DIR].to_pylist():
        if is_s3(dir_key):
            _s3_list(dir_key, exts, rows, delimiter=True)
        else:
            _local_scan(dir_key, exts, rows, subdirs=rows.add_dir)
    return rows.take()


def _walk_batch(batch: pa.Table, *, exts) -> Iterator[pa.Table]:
    """Recursive listing of each folder/prefix, a table per ROWS_PER_TABLE rows or S3 page."""
    for dir_key in batch[_DIR].to_pylist():
        rows = _Rows()
        if is_s3(dir_key):
            for _ in _s3_pages(dir_key, exts, rows):
                if len(rows) >= ROWS_PER_TABLE:
                    yield rows.take()
        else:
            stack = [dir_key]
            while stack:
                _local_scan(stack.pop(), exts, rows, subdirs=stack.append)
                if len(rows) >= ROWS_PER_TABLE:
                    yield rows.take()
        if len(rows):
            yield rows.take()


# local folders
def _local_scan(dir_key: str, exts, rows: _Rows, subdirs) -> None:
    """One folder: matching entries become rows, sub-folders go to ``subdirs`` (not followed
    when they are symbolic links). A folder that cannot be read becomes a list_error row."""
    path = os.fsencode(local_path(dir_key))
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        rows.fail(dir_key, "list_error", f"cannot list folder ({exc.strerror or exc})")
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            subdirs(local_key(entry.path))
        if os.fsdecode(entry.name).lower().endswith(exts):
            _local_stat(local_key(entry.path), rows)


def _local_stat(key: str, rows: _Rows) -> None:
    path = local_path(key)
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        if os.path.lexists(path):
            rows.fail(key, "not_found", "broken symbolic link (its target does not exist)")
        else:
            rows.fail(key, "not_found", "no such file")
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            rows.fail(key, "not_a_file", "symbolic link loop")
        elif exc.errno == errno.ENOTDIR:
            rows.fail(key, "not_found", "no such file (a parent is not a folder)")
        else:
            rows.fail(key, "read_error", f"cannot stat ({exc.strerror or exc})")
        return
    if statmod.S_ISREG(st.st_mode):
        rows.add(key, st.st_size, f"{st.st_size}:{st.st_mtime_ns}")
        return
    what = ("is a folder" if statmod.S_ISDIR(st.st_mode) else "is a FIFO" if statmod.S_ISFIFO(st.st_mode)
            else "is a socket" if statmod.S_ISSOCK(st.st_mode) else "is a device"
            if statmod.S_ISCHR(st.st_mode) or statmod.S_ISBLK(st.st_mode) else "is not a regular file")
    rows.fail(key, "not_a_file", what)


# S3
_CLIENTS: dict[tuple, object] = {}


def _s3_client():
    """A boto3 S3 client from this process's AWS environment (one per configuration)."""
    import boto3
    from botocore.config import Config

    key = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
                                            "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"))
    if key not in _CLIENTS:
        config = Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 8},
                        max_pool_connections=STAT_THREADS)
        _CLIENTS[key] = boto3.session.Session().client("s3", config=config)
    return _CLIENTS[key]


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _s3_version(size: int, modified: dt.datetime) -> str:
    # Whole seconds: S3's HeadObject (Last-Modified) has no finer resolution than its listings.
    return f"{size}:{int(modified.timestamp()) * 1_000_000_000}"


def _check_s3_prefix(input_uri: str, bucket: str, prefix: str) -> None:
    """One prefix-scoped listing request on the driver: a missing bucket or a refusal fails now."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        why = "bucket does not exist" if code == "NoSuchBucket" else f"cannot list input ({_short(exc)})"
        raise StorageError(f"{input_uri}: {why}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{input_uri}: cannot list input ({_short(exc)})") from exc


def _s3_list(dir_uri: str, exts, rows: _Rows, delimiter: bool) -> None:
    for _ in _s3_pages(dir_uri, exts, rows, delimiter=delimiter):
        pass


def _s3_pages(dir_uri: str, exts, rows: _Rows, delimiter: bool = False) -> Iterator[None]:
    """List a prefix page by page into ``rows`` (yields after each page). With a delimiter,
    sub-prefixes become _dir rows. A failure becomes one list_error row for the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _split_s3(dir_uri)
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = "/"
    try:
        for page in _s3_client().get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key.lower().endswith(exts):  # "x.mp4/" (a folder marker) does not end so
                    rows.add(f"s3://{bucket}/{key}", obj["Size"], _s3_version(obj["Size"], obj["LastModified"]))
            for sub in page.get("CommonPrefixes", ()):
                rows.add_dir(f"s3://{bucket}/{sub['Prefix']}")
            yield
    except (ClientError, BotoCoreError) as exc:
        rows.fail(dir_uri, "list_error", f"cannot list prefix ({_short(exc)})")
        yield


def _s3_stat(uris: list[str]) -> list[tuple]:
    """(size, version, kind, reason) for each s3:// URI, by HeadObject (GetObject permission)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _s3_client()

    def one(uri: str) -> tuple:
        bucket, key = _split_s3(uri)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None, None, "not_found", "no such object"
            if code in ("403", "AccessDenied", "Forbidden"):
                return None, None, "read_error", ("access denied (S3 answers 403 also for a missing object "
                                                  "when the caller may not list the bucket)")
            return None, None, "read_error", f"cannot stat ({_short(exc)})"
        except BotoCoreError as exc:
            return None, None, "read_error", f"cannot stat ({_short(exc)})"
        size = head["ContentLength"]
        return size, _s3_version(size, head["LastModified"]), None, None

    if len(uris) <= 1:
        return [one(u) for u in uris]
    with ThreadPoolExecutor(min(STAT_THREADS, len(uris))) as pool:
        return list(pool.map(one, uris))


# ---- manifests ---------------------------------------------------------------------------------
def _manifest(input_uri: str, allow_local_paths: bool):
    """Read a .txt/.csv/.parquet manifest with Ray Data; normalise, de-duplicate, stat."""
    import ray

    lower = input_uri.lower()
    in_s3 = is_s3(input_uri)
    fs, path = _manifest_location(input_uri)
    columns = _manifest_columns(fs, path, input_uri, lower)
    has_version = "source_version" in columns
    size_col = "size" if "size" in columns else "source_size" if "source_size" in columns else None
    base = None if in_s3 else os.path.dirname(path)
    if lower.endswith(".txt"):
        raw = ray.data.read_binary_files(path, filesystem=fs)
        raw = raw.map_batches(_txt_lines, batch_size=1, batch_format="pyarrow")
    elif lower.endswith(".csv"):
        import pyarrow.csv as pacsv

        types = {"video_uri": pa.binary(), "source_version": pa.string(), "size": pa.int64(),
                 "source_size": pa.int64()}
        raw = ray.data.read_csv(path, filesystem=fs, convert_options=pacsv.ConvertOptions(
            column_types={k: v for k, v in types.items() if k in columns},
            include_columns=[c for c in ("video_uri", size_col, "source_version") if c and c in columns]))
    else:
        raw = ray.data.read_parquet(path, filesystem=fs,
                                    columns=[c for c in ("video_uri", size_col, "source_version") if c])
    rows = raw.map_batches(_normalise_batch, batch_format="pyarrow", fn_kwargs={
        "manifest": input_uri, "base": base, "in_s3": in_s3, "allow_local": allow_local_paths,
        "size_col": size_col, "has_version": has_version})
    rows = _dedup(rows)
    if not has_version:
        rows = rows.map_batches(_stat_batch, batch_size=STAT_BATCH, batch_format="pyarrow", num_cpus=S3_LIST_CPUS)
    return rows


def _manifest_location(input_uri: str):
    """(pyarrow filesystem, path) of a manifest that exists and can be opened; else StorageError."""
    import pyarrow.fs as pafs

    if is_s3(input_uri):
        from botocore.exceptions import BotoCoreError, ClientError

        from jobs.storage import s3_filesystem

        bucket, key = _split_s3(input_uri)
        if not bucket or not key:
            raise StorageError(f"{input_uri}: not an s3://bucket/key manifest")
        try:
            _s3_client().head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise StorageError(f"{input_uri}: manifest does not exist") from exc
            raise StorageError(f"{input_uri}: cannot read manifest ({_short(exc)})") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{input_uri}: cannot read manifest ({_short(exc)})") from exc
        return s3_filesystem(), f"{bucket}/{key}"
    path = local_path(local_key(input_uri))
    if not os.path.exists(path):
        raise StorageError(f"{input_uri}: manifest does not exist")
    if not os.path.isfile(path):
        raise StorageError(f"{input_uri}: manifest is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot read manifest ({exc.strerror or exc})") from exc
    return pafs.LocalFileSystem(), path


def _manifest_columns(fs, path: str, input_uri: str, lower: str) -> set[str]:
    """The manifest's columns, from its header/footer only; a missing video_uri fails now."""
    if lower.endswith(".txt"):
        return {"video_uri"}
    try:
        if lower.endswith(".parquet"):
            import pyarrow.parquet as pq

            with fs.open_input_file(path) as f:
                names = set(pq.read_schema(f).names)
        else:
            import csv

            with fs.open_input_stream(path) as f:
                head = f.read(1 << 16)
            first = head.split(b"\n", 1)[0].decode("utf-8-sig", "replace").rstrip("\r")
            names = set(next(csv.reader([first]), [])) if first else set()
            if not first and not head:
                return {"video_uri"}  # an empty CSV: an empty listing
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot read manifest ({_short(exc)})") from exc
    except Exception as exc:  # pyarrow.ArrowInvalid and kin: not a Parquet file
        raise StorageError(f"{input_uri}: cannot read manifest ({_short(exc)})") from exc
    if "video_uri" not in names:
        raise StorageError(f"{input_uri}: manifest has no 'video_uri' column")
    return names


def _txt_lines(batch: pa.Table) -> Iterator[pa.Table]:
    """A .txt manifest file's bytes -> one row per URI line (raw bytes; '#' lines skipped)."""
    for data in batch["bytes"].to_pylist():
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        lines = [s for s in (line.strip() for line in data.splitlines()) if s and not s.startswith(b"#")]
        for i in range(0, len(lines), 100_000):
            yield pa.table({"video_uri": pa.array(lines[i:i + 100_000], pa.binary())})


def _normalise_batch(batch: pa.Table, *, manifest: str, base, in_s3: bool, allow_local: bool, size_col,
                     has_version: bool) -> pa.Table:
    """Manifest entries -> keys; entries that cannot be used become error rows here."""
    raws = batch["video_uri"].to_pylist()
    sizes = batch[size_col].to_pylist() if size_col else [None] * len(raws)
    versions = batch["source_version"].to_pylist() if has_version else [None] * len(raws)
    rows = _Rows()
    for raw, size, version in zip(raws, sizes, versions):
        if raw is None:
            continue
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        raw = raw.strip()
        if not raw:
            continue
        version = version if version else None  # "" is no version
        size = int(size) if size is not None else None
        if raw.startswith(b"s3://"):
            try:
                uri = raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = raw.decode("utf-8", "backslashreplace")
                rows.fail(shown, "invalid_uri", f"not UTF-8 (S3 keys are UTF-8), in manifest {manifest}")
                continue
            bucket, key = _split_s3(uri)
            if not bucket or not key:
                rows.fail(uri, "invalid_uri", f"not an s3://bucket/key URI, in manifest {manifest}")
            else:
                rows.add(uri, size, version)
            continue
        if b"://" in raw and not raw.startswith(b"file://"):
            shown = raw.decode("utf-8", "backslashreplace")
            rows.fail(shown, "invalid_uri", f"unsupported scheme (use a local path or s3://), in manifest {manifest}")
            continue
        text = os.fsdecode(raw)
        absolute = raw.startswith((b"/", b"file://"))
        try:
            key = local_key(text, base) if (absolute or base is not None) else text
        except StorageError as exc:
            rows.fail(raw.decode("utf-8", "backslashreplace"), "invalid_uri", f"{exc}, in manifest {manifest}")
            continue
        if in_s3 and not allow_local:
            shown = key if absolute else raw.decode("utf-8", "backslashreplace")
            rows.fail(shown, "not_allowed", f"local path in manifest {manifest}, which is in S3 "
                                            f"(use --allow-local-paths to allow local paths in it)")
        elif not absolute and base is None:
            rows.fail(raw.decode("utf-8", "backslashreplace"), "invalid_uri",
                      f"relative local path in manifest {manifest}, which is in S3 (use an absolute path)")
        else:
            rows.add(key, size, version)
    return rows.take()


def _dedup(ds):
    """One row per video_uri: hash-shuffle on the key, then a group-by inside each block.

    Ray's own map_groups relies on the same fact: after a key repartition, a block given
    whole (batch_size=None) holds every row of its keys. Under a sort-based shuffle strategy
    (RAY_DATA_DEFAULT_SHUFFLE_STRATEGY) a sort on the key does the co-location instead.
    """
    from ray.data.context import ShuffleStrategy

    hashed = ds.context.shuffle_strategy in (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2,
                                             ShuffleStrategy.GPU_SHUFFLE)
    shuffled = ds.repartition(_num_partitions(), keys=["video_uri"]) if hashed else ds.sort("video_uri")
    return shuffled.map_batches(_dedup_block, batch_size=None, batch_format="pyarrow")


def _num_partitions() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 2)) if ray.is_initialized() else 2
    return max(2, min(2 * cpus, 200))


def _dedup_block(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    indexed = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by("video_uri", use_threads=False).aggregate([("_i", "min")])["_i_min"]
    return table.take(first)


def _stat_batch(batch: pa.Table) -> pa.Table:
    """Size and version of each listed entry (error rows pass through); missing -> not_found."""
    uris = batch["video_uri"].to_pylist()
    kinds = batch["error_kind"].to_pylist()
    todo_s3 = [i for i, (u, k) in enumerate(zip(uris, kinds)) if k is None and is_s3(u)]
    results: dict[int, tuple] = dict(zip(todo_s3, _s3_stat([uris[i] for i in todo_s3])))
    sizes = batch["source_size"].to_pylist()
    versions = batch["source_version"].to_pylist()
    errors = batch["error"].to_pylist()
    rows = _Rows()
    for i, uri in enumerate(uris):
        if kinds[i] is not None:
            rows.add(uri, sizes[i], versions[i], kinds[i], errors[i])
        elif i in results:
            size, version, kind, reason = results[i]
            if kind:
                rows.fail(uri, kind, reason)
            else:
                rows.add(uri, size, version)
        else:
            _local_stat(uri, rows)
    return rows.take()


# ---- S3 Inventory ------------------------------------------------------------------------------
def _inventory(input_uri: str, exts: tuple[str, ...]):
    """An S3 Inventory report: its manifest.json names CSV(.gz)/Parquet data files in the
    destination bucket; their rows (Bucket, Key, Size, LastModifiedDate, ETag, ...) are the videos.

    source_version is "size:mtime_ns" from Size and LastModifiedDate (whole seconds), the same
    value a prefix listing or a stat of that object gives, so changing how INPUT is given does
    not relabel the archive; "etag:<ETag>" when the report has no LastModifiedDate.
    Delete markers and non-current versions (versioned reports) are left out.
    """
    import ray

    from jobs.storage import s3_filesystem

    doc = _read_inventory_manifest(input_uri)
    try:
        fmt = str(doc.get("fileFormat", "")).upper()
        dest = str(doc["destinationBucket"]).rsplit(":", 1)[-1]
        files = [f"{dest}/{f['key']}" for f in doc["files"]]
        source_bucket = str(doc.get("sourceBucket", ""))
    except (KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"{input_uri}: not an S3 Inventory manifest (missing {exc})") from exc
    if not files:
        return ray.data.from_arrow(_empty())
    fs = s3_filesystem()
    if fmt == "CSV":
        import pyarrow.csv as pacsv

        names = [c.strip() for c in str(doc.get("fileSchema", "")).split(",") if c.strip()]
        if not any(_col(n) == "key" for n in names):
            raise StorageError(f"{input_uri}: inventory fileSchema names no Key column")
        data = ray.data.read_csv(
            files, filesystem=fs, read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
            arrow_open_stream_args={"compression": "gzip"} if all(f.endswith(".gz") for f in files) else None)
    elif fmt == "PARQUET":
        data = ray.data.read_parquet(files, filesystem=fs)
    else:
        raise StorageError(f"{input_uri}: inventory fileFormat {fmt or '?'} is not supported (CSV or Parquet)")
    return data.map_batches(_inventory_batch, batch_format="pyarrow", fn_kwargs={
        "exts": exts, "csv": fmt == "CSV", "source_bucket": source_bucket})


def _read_inventory_manifest(input_uri: str) -> dict:
    try:
        if is_s3(input_uri):
            from botocore.exceptions import BotoCoreError, ClientError

            bucket, key = _split_s3(input_uri)
            try:
                body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                    raise StorageError(f"{input_uri}: inventory manifest does not exist") from exc
                raise StorageError(f"{input_uri}: cannot read inventory manifest ({_short(exc)})") from exc
            except BotoCoreError as exc:
                raise StorageError(f"{input_uri}: cannot read inventory manifest ({_short(exc)})") from exc
        else:
            with open(local_path(local_key(input_uri)), "rb") as f:
                body = f.read()
    except FileNotFoundError as exc:
        raise StorageError(f"{input_uri}: inventory manifest does not exist") from exc
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot read inventory manifest ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise StorageError(f"{input_uri}: inventory manifest is not JSON ({_short(exc)})") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"{input_uri}: not an S3 Inventory manifest")
    return doc


def _col(name: str) -> str:
    """Inventory column names: CSV fileSchema "LastModifiedDate", Parquet "last_modified_date"."""
    return name.replace("_", "").lower()


def _inventory_batch(batch: pa.Table, *, exts, csv: bool, source_bucket: str) -> pa.Table:
    cols = {_col(n): batch[n] for n in batch.column_names}
    n = batch.num_rows
    keys = cols["key"].to_pylist()
    buckets = cols["bucket"].to_pylist() if "bucket" in cols else [source_bucket] * n
    keep = [True] * n
    for flag, bad in (("isdeletemarker", True), ("islatest", False)):
        if flag in cols:
            values = cols[flag].to_pylist()
            for i, v in enumerate(values):
                if v is not None and (v if isinstance(v, bool) else str(v).lower() == "true") == bad:
                    keep[i] = False
    sizes = _int_or_none(cols["size"]) if "size" in cols else [None] * n
    if "lastmodifieddate" in cols:
        seconds = _epoch_seconds(cols["lastmodifieddate"])
    else:
        seconds = [None] * n
    etags = cols["etag"].to_pylist() if "etag" in cols else [None] * n
    rows = _Rows()
    for i in range(n):
        key = keys[i]
        if not keep[i] or key is None:
            continue
        if csv:
            key = unquote_plus(key)  # CSV reports URL-encode keys ("+" is a space)
        if not key.lower().endswith(exts):
            continue
        uri = f"s3://{buckets[i]}/{key}"
        size = sizes[i]
        if size is not None and seconds[i] is not None:
            version = f"{size}:{seconds[i] * 1_000_000_000}"
        elif etags[i]:
            version = "etag:" + etags[i].strip('"')
        else:
            version = None
        rows.add(uri, size, version)
    return rows.take()


def _int_or_none(column) -> list:
    if pa.types.is_integer(column.type):
        return column.to_pylist()
    return [int(v) if v not in (None, "") else None for v in column.to_pylist()]


def _epoch_seconds(column) -> list:
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False), pa.int64()).to_pylist()
    text = pc.utf8_slice_codeunits(pc.cast(column, pa.string()), 0, 19)  # 2026-11-01T02:03:04(.000Z)
    parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    return pc.cast(parsed, pa.int64()).to_pylist()


def _short(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
