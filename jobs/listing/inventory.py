"""An S3 Inventory report as a Ray Dataset: its manifest.json names CSV(.gz) or Parquet data
files in the destination bucket; their rows (Bucket, Key, Size, LastModifiedDate, ETag, ...)
are the videos. Inventory keys are unique per report, so nothing is de-duplicated.
"""
from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.compute as pc

from jobs.listing.rows import LISTING_SCHEMA, Rows, short
from jobs.listing.s3 import reading
from jobs.storage import StorageError, is_s3, local_key, local_path, split_s3
from jobs.storage import s3_client as client

INVENTORY_NAME = "manifest.json"


def inventory(input_uri: str, exts: tuple[str, ...]):
    """The videos of the inventory report whose manifest.json is ``input_uri``.

    source_version is "size:mtime_ns" from Size and LastModifiedDate (whole seconds), the same
    value a prefix listing or a stat of that object gives, so changing how INPUT is given does
    not relabel the archive; "etag:<ETag>" when the report has no LastModifiedDate.
    Delete markers and non-current versions (versioned reports) are left out.
    """
    import ray

    from jobs.storage import s3_filesystem

    doc = read_inventory_manifest(input_uri)
    try:
        fmt = str(doc.get("fileFormat", "")).upper()
        dest = str(doc["destinationBucket"]).rsplit(":", 1)[-1]
        files = [f"{dest}/{f['key']}" for f in doc["files"]]
        source_bucket = str(doc.get("sourceBucket", ""))
    except (KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"{input_uri}: not an S3 Inventory manifest (missing {exc})") from exc
    if not files:
        return ray.data.from_arrow(LISTING_SCHEMA.empty_table())
    fs = s3_filesystem()
    if fmt == "CSV":
        import pyarrow.csv as pacsv

        names = [c.strip() for c in str(doc.get("fileSchema", "")).split(",") if c.strip()]
        if not any(column_key(n) == "key" for n in names):
            raise StorageError(f"{input_uri}: inventory fileSchema names no Key column")
        data = ray.data.read_csv(
            files, filesystem=fs, read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
            arrow_open_stream_args={"compression": "gzip"} if all(f.endswith(".gz") for f in files) else None)
    elif fmt == "PARQUET":
        data = ray.data.read_parquet(files, filesystem=fs)
    else:
        raise StorageError(f"{input_uri}: inventory fileFormat {fmt or '?'} is not supported (CSV or Parquet)")
    return data.map_batches(inventory_batch, batch_format="pyarrow", fn_kwargs={
        "exts": exts, "csv": fmt == "CSV", "source_bucket": source_bucket})


def read_inventory_manifest(input_uri: str) -> dict:
    """The manifest.json document (local or on S3); StorageError when missing, unreadable or not JSON."""
    what = "inventory manifest"
    try:
        if is_s3(input_uri):
            bucket, key = split_s3(input_uri)
            with reading(input_uri, what):
                body = client().get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            with open(local_path(local_key(input_uri)), "rb") as f:
                body = f.read()
    except FileNotFoundError as exc:
        raise StorageError(f"{input_uri}: {what} does not exist") from exc
    except OSError as exc:
        raise StorageError(f"{input_uri}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise StorageError(f"{input_uri}: {what} is not JSON ({short(exc)})") from exc
    if not isinstance(doc, dict):
        raise StorageError(f"{input_uri}: not an S3 Inventory manifest")
    return doc


def column_key(name: str) -> str:
    """Inventory column names: CSV fileSchema "LastModifiedDate", Parquet "last_modified_date"."""
    return name.replace("_", "").lower()


def inventory_batch(batch: pa.Table, *, exts, csv: bool, source_bucket: str) -> pa.Table:
    cols = {column_key(n): batch[n] for n in batch.column_names}
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
    sizes = int_or_none(cols["size"]) if "size" in cols else [None] * n
    if "lastmodifieddate" in cols:
        seconds = epoch_seconds(cols["lastmodifieddate"])
    else:
        seconds = [None] * n
    etags = cols["etag"].to_pylist() if "etag" in cols else [None] * n
    rows = Rows()
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


def int_or_none(column) -> list:
    if pa.types.is_integer(column.type):
        return column.to_pylist()
    return [int(v) if v not in (None, "") else None for v in column.to_pylist()]


def epoch_seconds(column) -> list:
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False), pa.int64()).to_pylist()
    text = pc.utf8_slice_codeunits(pc.cast(column, pa.string()), 0, 19)  # 2026-11-01T02:03:04(.000Z)
    parsed = pc.strptime(text, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    return pc.cast(parsed, pa.int64()).to_pylist()
