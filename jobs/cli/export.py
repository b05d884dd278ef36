"""`stam-label export`: the current labels of OUTPUT as a flat file (jobs.tools.export).

A DEST of unknown format is bad usage (exit 2), refused before anything is read; an export
that cannot be done (nothing to export, storage unusable, cannot write) exits 1.
"""
from __future__ import annotations

import click

from jobs.storage import StorageError
from jobs.text import plural
from jobs.tools.export import STDOUT, ExportError, UnknownColumnError, export_format, export_labels


@click.command("export")
@click.argument("output_uri", metavar="OUTPUT")
@click.argument("dest", metavar="DEST")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Drop labelled rows whose top-1 score is below this (error rows are kept; see --status).")
@click.option("--status", type=click.Choice(["ok", "error", "all"]), default="all", show_default=True,
              help="Which rows to export.")
@click.option("--columns", default=None,
              help="Comma-separated table columns to export instead of the default ones (e.g. video_uri,label,score).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Output format (default: DEST's extension; csv for -).")
def export_command(output_uri: str, dest: str, min_score: float | None, status: str, columns: str | None,
                   fmt: str | None) -> None:
    """Write the current labels of OUTPUT to DEST as .csv, .jsonl or .parquet (by DEST's extension).

    One line per video (per segment for windowed runs), only each video's latest labels.
    DEST is a local path, an s3:// URI, or - for stdout (csv, or jsonl with --format jsonl).
    In CSV, the labels and scores lists are JSON arrays.
    """
    try:
        export_format(dest, fmt)
    except ExportError as exc:
        raise click.BadParameter(str(exc), param_hint="DEST") from None
    picked = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        result = export_labels(output_uri, dest, min_score=min_score, status=status, columns=picked, fmt=fmt)
    except UnknownColumnError as exc:  # the user's option, not the table, is wrong: exit 2
        raise click.BadParameter(str(exc), param_hint="--columns") from None
    except (ExportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    message = f"wrote {plural(result.rows, 'row')} to {result.dest} (columns: {', '.join(result.columns)})"
    click.echo(message, err=dest == STDOUT)  # with DEST -, stdout holds the export alone
