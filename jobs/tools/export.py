"""Export: the current label table as one flat .csv, .jsonl or .parquet file (`stam-label export`).

One line per video (per segment, for windowed runs), taken from the Delta table's current
version (``LabelTable.read_current``), so a video labelled several times appears once, with
its latest labels. DEST ``-`` writes CSV (or JSON lines with ``--format jsonl``) to stdout.
``--columns`` picks any of the table's columns instead of the default ones.

Columns: ``video_uri``, then ``segment_index``, ``segment_start_s``, ``segment_end_s`` when
the table holds window-mode rows, then ``label`` (top-1 class name), ``score`` (its
probability), ``labels``, ``scores`` (top-k, best first), ``status``, ``error``.

Lists in CSV are JSON arrays in one cell (``["abseiling", "archery"]``): class names may hold
commas, quotes or semicolons, and every CSV reader plus ``json.loads`` gets them back exactly.
Scores are written with the shortest decimal that round-trips their float32 value.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.storage import put_bytes, resolve
from jobs.table import LabelTable

FORMATS = (".csv", ".jsonl", ".parquet")
SEGMENT_COLUMNS = ("segment_index", "segment_start_s", "segment_end_s")
READ_COLUMNS = ["video_uri", "mode", "segment_index", "segment_start_s", "segment_end_s", "status", "error",
                "labels", "scores"]
STDOUT = "-"


class ExportError(Exception):
    """The export cannot be done (bad destination, nothing to export); one line for the user."""


class UnknownColumnError(ExportError):
    """``columns`` names a column the table does not have: the caller's mistake (usage)."""


@dataclass
class ExportResult:
    dest: str
    rows: int
    columns: list[str]


def export_format(dest: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else DEST's extension; ExportError for any other."""
    if fmt:
        ext = "." + fmt.lstrip(".").lower()
        if dest == STDOUT and ext == ".parquet":
            raise ExportError("parquet cannot go to stdout; give a file name")
        if ext not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(f[1:] for f in FORMATS)}")
        return ext
    if dest == STDOUT:
        return ".csv"
    ext = os.path.splitext(dest.rstrip("/"))[1].lower()
    if ext not in FORMATS:
        raise ExportError(f"{dest}: unknown export format {ext or '(no extension)'!r}; "
                          f"use a name ending in {', '.join(FORMATS)}")
    return ext


def flat_table(output_uri: str, *, min_score: float | None = None, status: str = "all",
               columns: list[str] | None = None) -> pa.Table:
    """The export's rows: current rows only, filtered, with the top-1 label split out.

    ``status`` keeps "ok" rows, "error" rows or "all". ``min_score`` drops labelled rows whose
    top-1 score is below it; error rows have no score and are kept or dropped by ``status`` only.
    """
    if status not in ("ok", "error", "all"):
        raise ValueError(f"status must be ok, error or all, not {status!r}")
    label_table = LabelTable(output_uri)
    if columns:
        known = set(label_table.schema().names) if label_table.exists() else set()
        unknown = [c for c in columns if c not in known]
        if known and unknown:
            raise UnknownColumnError(f"{output_uri}: no column {', '.join(map(repr, unknown))}; "
                              f"the table has: {', '.join(sorted(known))}")
    table = label_table.read_current(sorted(set(READ_COLUMNS) | set(columns or ())))
    if table is None:
        raise ExportError(f"{output_uri}: no committed label rows to export")
    windowed = table.num_rows > 0 and pc.any(pc.not_equal(table["mode"], "video")).as_py()

    table = table.drop_columns([c for c in ("label", "score") if c in table.column_names])
    table = table.append_column("label", _first(table["labels"])).append_column("score", _first(table["scores"]))
    if status != "all":
        table = table.filter(pc.equal(table["status"], status))
    if min_score is not None:
        # Error rows (null score) pass; labelled rows need a top-1 score of at least min_score.
        keep = pc.or_kleene(pc.not_equal(table["status"], "ok"),
                            pc.greater_equal(table["score"], pa.scalar(min_score, pa.float32())))
        table = table.filter(pc.fill_null(keep, False))

    order = [("video_uri", "ascending")] + ([("segment_index", "ascending")] if windowed else [])
    if columns:
        return table.sort_by(order).select(columns)
    out: dict[str, pa.Array] = {"video_uri": table["video_uri"]}
    if windowed:
        for name in SEGMENT_COLUMNS:
            out[name] = table[name]
    out.update(label=table["label"], score=table["score"], labels=table["labels"], scores=table["scores"],
               status=table["status"], error=table["error"])
    return pa.table(out).sort_by(order)


def _first(lists: pa.ChunkedArray) -> pa.ChunkedArray:
    """Element 0 of each list; null for a null or empty list (error rows)."""
    nonempty = pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False)
    return pc.list_element(pc.if_else(nonempty, lists, pa.scalar(None, lists.type)), 0)


def export_labels(output_uri: str, dest: str, *, min_score: float | None = None, status: str = "all",
                  columns: list[str] | None = None, fmt: str | None = None) -> ExportResult:
    """Write the flat label table of OUTPUT to DEST (local path, s3:// or - for stdout)."""
    fmt = export_format(dest, fmt)  # before reading anything: a typo in DEST fails at once
    table = flat_table(output_uri, min_score=min_score, status=status, columns=columns)
    if fmt == ".parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
    elif fmt == ".jsonl":
        data = "".join(json.dumps(_plain(row), ensure_ascii=False) + "\n" for row in table.to_pylist()).encode()
    else:
        data = _csv_bytes(table)
    if dest == STDOUT:
        sys.stdout.buffer.write(data)
    else:
        _write(dest, data)
    return ExportResult(dest=dest, rows=table.num_rows, columns=table.column_names)


def _plain(row: dict) -> dict:
    """A row for JSON: float32 scores as their shortest round-trip decimal, not float64 noise."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    if out.get("score") is not None:
        out["score"] = _f32(out["score"])
    if out.get("scores") is not None:
        out["scores"] = [_f32(s) for s in out["scores"]]
    return out


def _f32(value: float) -> float:
    return float(str(np.float32(value)))


def _csv_bytes(table: pa.Table) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        row = _plain(row)
        cells = []
        for name in table.column_names:
            value = row[name]
            if isinstance(value, list):
                cells.append(json.dumps(value, ensure_ascii=False))
            else:
                cells.append("" if value is None else value)
        writer.writerow(cells)
    return text.getvalue().encode("utf-8")


def _write(dest: str, data: bytes) -> None:
    """Write the whole file at once (a reader never sees half an export): jobs.storage.put_bytes."""
    fs, path = resolve(dest)
    try:
        put_bytes(fs, path, data)
    except OSError as exc:
        raise ExportError(f"{dest}: cannot write export ({str(exc).splitlines()[0]})") from exc
