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

How the work is spread (nothing proportional to the archive is on the driver), one module each:
  * ``tree``: a folder or prefix, split levels then recursive walks as Ray tasks;
  * ``manifest``: .txt/.csv/.parquet read by Ray Data, normalised, de-duplicated
    (``dedup``: a hash shuffle on video_uri) and stat'ed on workers;
  * ``inventory``: an S3 Inventory report's data files read by Ray Data;
  * ``local`` and ``s3``: one folder or prefix, one stat; ``rows``: the schema, built row by row.

S3 access is boto3 with the standard AWS environment (``AWS_ENDPOINT_URL`` etc.), created on
each worker from the environment it inherits. Only prefix-scoped requests are made:
ListObjectsV2 with ``prefix`` = the input prefix + "/" (or below), HeadObject/GetObject of
objects; never a HEAD of the bucket or of the prefix itself.
"""
from __future__ import annotations

import os
import time

import pyarrow as pa

from jobs.listing.inventory import INVENTORY_NAME, inventory
from jobs.listing.manifest import MANIFEST_EXTENSIONS, manifest
from jobs.listing.rows import LISTING_SCHEMA
from jobs.listing.s3 import S3_LIST_CPUS, check_prefix
from jobs.listing.tree import tree, walk_here
from jobs.storage import DEFAULT_EXTENSIONS, StorageError, is_s3, local_key, local_path, split_s3

__all__ = ["LISTING_SCHEMA", "input_kind", "list_here", "list_source", "local_key", "local_path", "tree_root"]


def input_kind(input_uri: str) -> str:
    """What INPUT names: "inventory" (an S3 Inventory ``manifest.json``), "manifest" (.txt, .csv,
    .parquet) or "tree" (a folder or prefix; a trailing slash always names one)."""
    lower = input_uri.lower()
    if lower.endswith("/"):
        return "tree"
    if lower.rsplit("/", 1)[-1] == INVENTORY_NAME:
        return "inventory"
    return "manifest" if lower.endswith(MANIFEST_EXTENSIONS) else "tree"


def list_source(input_uri: str, *, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
                allow_local_paths: bool = False):
    """The videos INPUT names, as a lazy Ray Dataset with LISTING_SCHEMA (not sorted).

    Raises StorageError (one line naming the input) when the input itself cannot be used:
    a folder that does not exist, a manifest that cannot be read or lacks ``video_uri``, an
    S3 bucket that does not exist or refuses the listing. Checked before any Ray work.
    """
    exts = tuple(e.lower() for e in extensions)
    kind = input_kind(input_uri)
    if kind == "inventory":
        return inventory(input_uri, exts)
    if kind == "manifest":
        return manifest(input_uri, allow_local_paths)
    root = tree_root(input_uri)
    return tree(root, exts, S3_LIST_CPUS if is_s3(root) else 1.0)


def list_here(input_uri: str, *, extensions: tuple[str, ...], max_rows: int, max_seconds: float) -> pa.Table | None:
    """A small folder or prefix listed in this process, without Ray: a table with LISTING_SCHEMA
    (not sorted), or None when INPUT is a manifest or an inventory, or its listing passes
    ``max_rows`` rows or ``max_seconds`` (then ``list_source`` lists it on Ray).

    A rerun over a folder whose videos are all labelled then needs no Ray at all. Raises
    StorageError as ``list_source`` does.
    """
    if input_kind(input_uri) != "tree":
        return None
    exts = tuple(e.lower() for e in extensions)
    return walk_here(tree_root(input_uri), exts, max_rows=max_rows, deadline=time.monotonic() + max_seconds)


def tree_root(input_uri: str, s3=None) -> str:
    """The folder's key or the ``s3://bucket/prefix/`` to walk; StorageError when it cannot be
    (an S3 prefix answers one listing request, made with ``s3`` if given)."""
    if is_s3(input_uri):
        bucket, prefix = split_s3(input_uri)
        if not bucket:
            raise StorageError(f"{input_uri}: no bucket in the S3 URI")
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        check_prefix(input_uri, bucket, prefix, s3)
        return f"s3://{bucket}/{prefix}"
    if "://" in input_uri and not input_uri.startswith("file://"):
        raise StorageError(f"{input_uri}: unsupported storage scheme (use a local path or s3://)")
    root = local_key(input_uri)
    path = local_path(root)
    if not os.path.exists(path):
        raise StorageError(f"{input_uri}: input does not exist")
    if not os.path.isdir(path):
        raise StorageError(f"{input_uri}: input is not a folder (INPUT is a folder, an s3:// prefix or a manifest: "
                           f"{', '.join(MANIFEST_EXTENSIONS)} or {INVENTORY_NAME})")
    if not os.access(path, os.R_OK | os.X_OK):
        raise StorageError(f"{input_uri}: input folder is not readable (permission denied)")
    return root
