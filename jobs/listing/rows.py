"""The rows every way of listing produces: LISTING_SCHEMA, built row by row (``Rows``).

Split stages add a ``_dir`` column: a sub-folder still to list (its video_uri is "").
"""
from __future__ import annotations

import pyarrow as pa

LISTING_SCHEMA = pa.schema([
    pa.field("video_uri", pa.string(), nullable=False),
    pa.field("source_size", pa.int64()),
    pa.field("source_version", pa.string()),
    pa.field("error_kind", pa.string()),
    pa.field("error", pa.string()),
])
DIR = "_dir"
SPLIT_SCHEMA = LISTING_SCHEMA.append(pa.field(DIR, pa.string()))


class Rows:
    """Columns of LISTING_SCHEMA (plus _dir in split stages) built row by row."""

    def __init__(self, split: bool = False):
        self.split = split
        self.cols: dict[str, list] = {f.name: [] for f in (SPLIT_SCHEMA if split else LISTING_SCHEMA)}

    def __len__(self) -> int:
        return len(self.cols["video_uri"])

    def add(self, uri: str, size=None, version=None, kind=None, error=None) -> None:
        for key, value in (("video_uri", uri), ("source_size", size), ("source_version", version),
                           ("error_kind", kind), ("error", error)):
            self.cols[key].append(value)
        if self.split:
            self.cols[DIR].append(None)

    def fail(self, uri: str, kind: str, reason: str) -> None:
        self.add(uri, kind=kind, error=f"{uri}: {reason}")

    def add_dir(self, dir_key: str) -> None:
        self.add("")
        self.cols[DIR][-1] = dir_key

    def take(self) -> pa.Table:
        table = pa.table(self.cols, schema=SPLIT_SCHEMA if self.split else LISTING_SCHEMA)
        for values in self.cols.values():
            values.clear()
        return table


def short(exc: Exception) -> str:
    """An exception as one line of at most 300 characters, for error rows and messages."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
