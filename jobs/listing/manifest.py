"""A .txt, .csv or .parquet manifest as a Ray Dataset: read by Ray Data, normalised to keys,
de-duplicated and stat'ed on workers.

``read_binary_files`` for .txt (so raw non-UTF-8 bytes survive), ``read_csv`` with video_uri
read as binary, ``read_parquet``. Entries are stat'ed in batches of STAT_BATCH (boto3
HeadObject in a small thread pool / ``os.stat``) unless the manifest has a ``source_version``
column, which is then used as it is (with ``size``, if present) and nothing is stat'ed.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa

from jobs.listing.dedup import dedup
from jobs.listing.local import local_stat
from jobs.listing.rows import Rows, short
from jobs.listing.s3 import S3_LIST_CPUS, reading, s3_stat
from jobs.storage import StorageError, is_s3, local_key, local_path, split_s3
from jobs.storage import s3_client as client

MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")
STAT_BATCH = 256  # manifest entries stat'ed per batch


def manifest(input_uri: str, allow_local_paths: bool):
    """Read a .txt/.csv/.parquet manifest with Ray Data; normalise, de-duplicate, stat."""
    import ray

    lower = input_uri.lower()
    in_s3 = is_s3(input_uri)
    fs, path = manifest_location(input_uri)
    columns = manifest_columns(fs, path, input_uri, lower)
    has_version = "source_version" in columns
    size_col = "size" if "size" in columns else "source_size" if "source_size" in columns else None
    base = None if in_s3 else os.path.dirname(path)
    if lower.endswith(".txt"):
        raw = ray.data.read_binary_files(path, filesystem=fs)
        raw = raw.map_batches(txt_lines, batch_size=1, batch_format="pyarrow")
    elif lower.endswith(".csv"):
        import pyarrow.csv as pacsv

        types = {"video_uri": pa.binary(), "source_version": pa.string(), "size": pa.int64(),
                 "source_size": pa.int64()}
        raw = ray.data.read_csv(path, filesystem=fs, convert_options=pacsv.ConvertOptions(
            column_types={k: v for k, v in types.items() if k in columns},
            include_columns=[c for c in ("video_uri", size_col, "source_version") if c and c in columns]))
    else:
        raw = ray.data.read_parquet(path, filesystem=fs).select_columns(
            [c for c in ("video_uri", size_col, "source_version") if c])
    rows = raw.map_batches(normalise_batch, batch_format="pyarrow", fn_kwargs={
        "manifest": input_uri, "base": base, "in_s3": in_s3, "allow_local": allow_local_paths,
        "size_col": size_col, "has_version": has_version})
    rows = dedup(rows)
    if not has_version:
        rows = rows.map_batches(stat_batch, batch_size=STAT_BATCH, batch_format="pyarrow", num_cpus=S3_LIST_CPUS)
    return rows


def manifest_location(input_uri: str):
    """(pyarrow filesystem, path) of a manifest that exists and can be opened; else StorageError."""
    import pyarrow.fs as pafs

    if is_s3(input_uri):
        from jobs.storage import s3_filesystem

        bucket, key = split_s3(input_uri)
        if not bucket or not key:
            raise StorageError(f"{input_uri}: not an s3://bucket/key manifest")
        with reading(input_uri, "manifest"):
            client().head_object(Bucket=bucket, Key=key)
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


def manifest_columns(fs, path: str, input_uri: str, lower: str) -> set[str]:
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
    except (OSError, pa.ArrowException) as exc:  # ArrowInvalid and kin: not a Parquet file
        raise StorageError(f"{input_uri}: cannot read manifest ({short(exc)})") from exc
    if "video_uri" not in names:
        raise StorageError(f"{input_uri}: manifest has no 'video_uri' column")
    return names


def txt_lines(batch: pa.Table) -> Iterator[pa.Table]:
    """A .txt manifest file's bytes -> one row per URI line (raw bytes; '#' lines skipped)."""
    for data in batch["bytes"].to_pylist():
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        lines = [s for s in (line.strip() for line in data.splitlines()) if s and not s.startswith(b"#")]
        for i in range(0, len(lines), 100_000):
            yield pa.table({"video_uri": pa.array(lines[i:i + 100_000], pa.binary())})


def normalise_batch(batch: pa.Table, *, manifest: str, base, in_s3: bool, allow_local: bool, size_col,
                    has_version: bool) -> pa.Table:
    """Manifest entries -> keys; entries that cannot be used become error rows here."""
    raws = batch["video_uri"].to_pylist()
    sizes = batch[size_col].to_pylist() if size_col else [None] * len(raws)
    versions = batch["source_version"].to_pylist() if has_version else [None] * len(raws)
    rows = Rows()
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
            bucket, key = split_s3(uri)
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


def stat_batch(batch: pa.Table) -> pa.Table:
    """Size and version of each listed entry (error rows pass through); missing -> not_found."""
    uris = batch["video_uri"].to_pylist()
    kinds = batch["error_kind"].to_pylist()
    todo_s3 = [i for i, (u, k) in enumerate(zip(uris, kinds)) if k is None and is_s3(u)]
    results: dict[int, tuple] = dict(zip(todo_s3, s3_stat([uris[i] for i in todo_s3])))
    sizes = batch["source_size"].to_pylist()
    versions = batch["source_version"].to_pylist()
    errors = batch["error"].to_pylist()
    rows = Rows()
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
            local_stat(uri, rows)
    return rows.take()
