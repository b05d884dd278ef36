"""`stam-label export`: the current label table as one flat .csv, .jsonl or .parquet file.

One line per video (per segment, for windowed runs), taken from ``LabelTable.read_current``,
so a video labelled several times appears once, with the labels of its latest run.

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
import secrets
from dataclasses import dataclass

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.storage import StorageError, resolve
from jobs.table import LabelTable

FORMATS = (".csv", ".jsonl", ".parquet")
SEGMENT_COLUMNS = ("segment_index", "segment_start_s", "segment_end_s")
READ_COLUMNS = ["video_uri", "mode", "segment_index", "segment_start_s", "segment_end_s", "status", "error",
                "labels", "scores"]


class ExportError(Exception):
    """The export cannot be done (bad destination, nothing to export); one line for the user."""


@dataclass
class ExportResult:
    dest: str
    rows: int
    columns: list[str]


def export_format(dest: str) -> str:
    """The output format picked by DEST's extension; ExportError for any other."""
    ext = os.path.splitext(dest.rstrip("/"))[1].lower()
    if ext not in FORMATS:
        raise ExportError(f"{dest}: unknown export format {ext or '(no extension)'!r}; "
                          f"use a name ending in {', '.join(FORMATS)}")
    return ext


def flat_table(output_uri: str, *, min_score: float | None = None, status: str = "all") -> pa.Table:
    """The export's rows: current rows only, filtered, with the top-1 label split out.

    ``status`` keeps "ok" rows, "error" rows or "all". ``min_score`` drops labelled rows whose
    top-1 score is below it; error rows have no score and are kept or dropped by ``status`` only.
    """
    if status not in ("ok", "error", "all"):
        raise ValueError(f"status must be ok, error or all, not {status!r}")
    table = LabelTable(output_uri).read_current(READ_COLUMNS)
    if table is None:
        raise ExportError(f"{output_uri}: no committed label rows to export")
    windowed = table.num_rows > 0 and pc.any(pc.not_equal(table["mode"], "video")).as_py()

    table = table.append_column("label", _first(table["labels"])).append_column("score", _first(table["scores"]))
    if status != "all":
        table = table.filter(pc.equal(table["status"], status))
    if min_score is not None:
        # Error rows (null score) pass; labelled rows need a top-1 score of at least min_score.
        keep = pc.or_kleene(pc.not_equal(table["status"], "ok"),
                            pc.greater_equal(table["score"], pa.scalar(min_score, pa.float32())))
        table = table.filter(pc.fill_null(keep, False))

    columns: dict[str, pa.Array] = {"video_uri": table["video_uri"]}
    if windowed:
        for name in SEGMENT_COLUMNS:
            columns[name] = table[name]
    columns.update(label=table["label"], score=table["score"], labels=table["labels"], scores=table["scores"],
                   status=table["status"], error=table["error"])
    flat = pa.table(columns)
    order = [("video_uri", "ascending")] + ([("segment_index", "ascending")] if windowed else [])
    return flat.sort_by(order)


def _first(lists: pa.ChunkedArray) -> pa.ChunkedArray:
    """Element 0 of each list; null for a null or empty list (error rows)."""
    nonempty = pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False)
    return pc.list_element(pc.if_else(nonempty, lists, pa.scalar(None, lists.type)), 0)


def export_labels(output_uri: str, dest: str, *, min_score: float | None = None, status: str = "all") -> ExportResult:
    """Write the flat label table of OUTPUT to DEST (local path or s3://), format by extension."""
    fmt = export_format(dest)  # before reading anything: a typo in DEST fails at once
    table = flat_table(output_uri, min_score=min_score, status=status)
    if fmt == ".parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
    elif fmt == ".jsonl":
        data = "".join(json.dumps(_plain(row), ensure_ascii=False) + "\n" for row in table.to_pylist()).encode()
    else:
        data = _csv_bytes(table)
    _write(dest, data)
    return ExportResult(dest=dest, rows=table.num_rows, columns=table.column_names)


def _plain(row: dict) -> dict:
    """A row for JSON: float32 scores as their shortest round-trip decimal, not float64 noise."""
    out = dict(row)
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
    """Write the whole file at once: temp file + rename locally, one upload on S3."""
    fs, path = resolve(dest)
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # a reader never sees half an export
        else:
            with fs.open_output_stream(path) as f:
                f.write(data)
    except OSError as exc:
        raise ExportError(f"{dest}: cannot write export ({str(exc).splitlines()[0]})") from exc


@click.command("export")
@click.argument("output_uri", metavar="OUTPUT")
@click.argument("dest", metavar="DEST")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Drop labelled rows whose top-1 score is below this (error rows are kept; see --status).")
@click.option("--status", type=click.Choice(["ok", "error", "all"]), default="all", show_default=True,
              help="Which rows to export.")
def export_command(output_uri: str, dest: str, min_score: float | None, status: str) -> None:
    """Write the current labels of OUTPUT to DEST as .csv, .jsonl or .parquet (by DEST's extension).

    One line per video (per segment for windowed runs), only each video's latest labels.
    DEST is a local path or an s3:// URI. In CSV, the labels and scores lists are JSON arrays.
    """
    try:
        export_format(dest)
    except ExportError as exc:
        raise click.BadParameter(str(exc), param_hint="DEST") from None
    try:
        result = export_labels(output_uri, dest, min_score=min_score, status=status)
    except (ExportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {result.rows} rows to {result.dest} (columns: {', '.join(result.columns)})")
