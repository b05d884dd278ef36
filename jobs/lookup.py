"""The current rows of given videos, read without reading the table.

The label table's files are clustered by ``video_uri`` (commits write sorted batches,
``optimize`` sorts), and every file carries its URI range in the Delta log (min/max
statistics) and every row group in its Parquet footer. A look-up narrows three times:

    files       whose [min, max] range holds one of the URIs          (the Delta log, no I/O)
    row groups  whose [min, max] range holds one of them              (the Parquet footer)
    rows        whose video_uri is one of them                        (the video_uri column)

and reads the other columns only for row groups with a match. So the skip test of a run of
10 new videos reads a few row groups whatever the table holds, and 100k videos spread over
the table read the ``video_uri`` column once. The statistics are bounds, never trusted as
exact values: delta-rs truncates long strings (the min to a prefix, the max rounded up).
"""
from __future__ import annotations

import bisect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.schema import plain

READ_THREADS = 2  # files read at once: pyarrow decodes outside the GIL


@dataclass(frozen=True)
class FileRange:
    path: str  # in the table's pyarrow filesystem
    lo: str | None  # a lower bound of the file's video_uri (None: unknown)
    hi: str | None  # an upper bound
    rows: int
    reviewed: int = 0  # rows with a human label (from the log's null counts; 0 when the file predates the column)


def file_ranges(snapshot, to_path) -> list[FileRange]:
    """Every data file of a ``deltalake.DeltaTable`` snapshot with its URI bounds, from the log."""
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    if not actions.num_rows:
        return []
    uris = snapshot.file_uris()
    by_name = {u.rsplit("/", 1)[-1]: u for u in uris}
    names = actions["path"].to_pylist()
    lo = actions["min.video_uri"].to_pylist() if "min.video_uri" in actions.column_names else [None] * len(names)
    hi = actions["max.video_uri"].to_pylist() if "max.video_uri" in actions.column_names else [None] * len(names)
    rows = actions["num_records"].to_pylist()
    nulls = (actions["null_count.human_label"].to_pylist() if "null_count.human_label" in actions.column_names
             else [None] * len(names))
    out = [FileRange(to_path(by_name.get(n.rsplit("/", 1)[-1], n)), a, b, int(r or 0),
                     reviewed=int(r or 0) - int(z) if z is not None else 0)
           for n, a, b, r, z in zip(names, lo, hi, rows, nulls)]
    return sorted(out, key=lambda f: f.lo or "")


def may_hold(lo: str | None, hi: str | None, uris: list[str]) -> bool:
    """Whether a range [lo, hi] (either end unknown: open) can hold one of ``uris`` (sorted)."""
    i = 0 if lo is None else bisect.bisect_left(uris, lo)
    return i < len(uris) and (hi is None or uris[i] <= hi)


def rows_of(fs: pafs.FileSystem, files: list[FileRange], uris: pa.Array | list[str],
            columns: list[str]) -> pa.Table | None:
    """The rows (``columns``, plain Arrow types) whose video_uri is in ``uris``; None when none.

    Columns a file lacks (added to the table after it was written) read as null.
    """
    wanted = sorted(set(uris.to_pylist() if isinstance(uris, (pa.Array, pa.ChunkedArray)) else uris))
    if not wanted:
        return None
    value_set = pa.array(wanted, pa.string())
    candidates = [f for f in files if may_hold(f.lo, f.hi, wanted)]
    with ThreadPoolExecutor(READ_THREADS) as pool:
        parts = [t for t in pool.map(lambda f: _rows_in_file(fs, f.path, wanted, value_set, columns), candidates)
                 if t is not None]
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive")


def _rows_in_file(fs, path: str, wanted: list[str], value_set: pa.Array, columns: list[str]) -> pa.Table | None:
    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f, pre_buffer=False)
        meta, names = parquet.metadata, parquet.schema_arrow.names
        uri_col = names.index("video_uri")
        present = [c for c in columns if c in names]
        parts = []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(uri_col).statistics
            if stats is not None and stats.has_min_max and not may_hold(stats.min, stats.max, wanted):
                continue
            keys = plain(parquet.read_row_group(g, columns=["video_uri"]))["video_uri"]
            hit = pc.is_in(keys, value_set=value_set)
            if not pc.any(hit).as_py():
                continue
            part = plain(parquet.read_row_group(g, columns=present)).filter(hit)
            parts.append(part)
    if not parts:
        return None
    table = pa.concat_tables(parts)
    for name in columns:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows))  # null type: promoted on concat
    return table.select(columns)
