"""A folder or S3 prefix as a Ray Dataset: one or two shallow "split" levels find sub-folders,
then each sub-folder left is walked recursively by a Ray task.

Each split level is a Ray Data stage whose output is materialized in the object store (not on
the driver); the split levels run when ``tree`` is called, the walks are lazy. A second level
runs only when the first found fewer than ``split_target()`` sub-folders.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from jobs.listing.local import local_scan
from jobs.listing.rows import DIR, Rows
from jobs.listing.s3 import s3_pages
from jobs.storage import is_s3

SPLIT_LEVELS = 2  # shallow listings before the recursive walks
SPLIT_TARGET = 64  # enough sub-folders to stop splitting (at least 4 per CPU, see split_target)
MAX_LIST_TASKS = 512  # folders are grouped into at most this many walk tasks
ROWS_PER_TABLE = 1000  # a walk yields a table per this many rows (S3: per page)


def tree(root: str, exts: tuple[str, ...], cpus: float):
    """Every matching file under ``root`` (a local key or an s3://bucket/prefix/), ``cpus`` per listing task."""
    import ray

    frontier = ray.data.from_items([{DIR: root}])
    parts = []
    target = split_target()
    for level in range(SPLIT_LEVELS):
        count = frontier.count()
        if count == 0 or (level > 0 and count >= target):
            break
        mixed = (frontier.repartition(min(count, MAX_LIST_TASKS))
                 .map_batches(split_batch, batch_size=1, batch_format="pyarrow", num_cpus=cpus,
                              fn_kwargs={"exts": exts})
                 .materialize())
        parts.append(mixed.map_batches(final_rows, batch_size=None, batch_format="pyarrow"))
        frontier = mixed.map_batches(dir_rows, batch_size=None, batch_format="pyarrow").materialize()
    count = frontier.count()
    if count:
        parts.append(frontier.repartition(min(count, MAX_LIST_TASKS))
                     .map_batches(walk_batch, batch_size=1, batch_format="pyarrow", num_cpus=cpus,
                                  fn_kwargs={"exts": exts}))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def walk_here(root: str, exts: tuple[str, ...], *, max_rows: int, deadline: float) -> pa.Table | None:
    """Every matching file under ``root``, listed in this process: a table, or None once the
    listing passes ``max_rows`` rows or the ``deadline`` (time.monotonic), checked after each
    folder or S3 page, so that a big tree costs at most that before Ray lists it."""
    rows, parts, count = Rows(), [], 0
    for _ in walk(root, exts, rows):
        if count + len(rows) > max_rows or time.monotonic() > deadline:
            return None
        if len(rows) >= ROWS_PER_TABLE:
            count += len(rows)
            parts.append(rows.take())
    parts.append(rows.take())
    return pa.concat_tables(parts)


def walk(root: str, exts: tuple[str, ...], rows: Rows) -> Iterator[None]:
    """Recursive listing of one folder or prefix into ``rows``, yielding after each folder or S3 page."""
    if is_s3(root):
        yield from s3_pages(root, exts, rows)
        return
    stack = [root]
    while stack:
        local_scan(stack.pop(), exts, rows, subdirs=stack.append)
        yield


def split_target() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(SPLIT_TARGET, 4 * cpus)


def final_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table[DIR])).drop_columns([DIR])


def dir_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table[DIR])).select([DIR])


def split_batch(batch: pa.Table, *, exts) -> pa.Table:
    """Shallow listing of each folder/prefix: its matching files and its sub-folders."""
    rows = Rows(split=True)
    for dir_key in batch[DIR].to_pylist():
        if is_s3(dir_key):
            for _ in s3_pages(dir_key, exts, rows, delimiter=True):
                pass
        else:
            local_scan(dir_key, exts, rows, subdirs=rows.add_dir)
    return rows.take()


def walk_batch(batch: pa.Table, *, exts) -> Iterator[pa.Table]:
    """Recursive listing of each folder/prefix, a table per ROWS_PER_TABLE rows or S3 page.

    Yields at least one table, empty if need be: a task that yields nothing leaves Ray Data a
    block with no columns, which later stages cannot select from (a folder named dir.mp4/).
    """
    yielded = False
    for dir_key in batch[DIR].to_pylist():
        rows = Rows()
        for _ in walk(dir_key, exts, rows):
            if len(rows) >= ROWS_PER_TABLE:
                yielded = True
                yield rows.take()
        if len(rows) or not yielded:
            yielded = True
            yield rows.take()
