"""The human review loop (jobs.tools.review): `stam-label review` writes a queue of the videos
a person should check, `stam-label import-reviews` takes their labels back into the table,
`stam-label diff` shows what changed between two versions of it.

A review command that cannot do what was asked (nothing to review, a bad review file, an
unknown version) exits 1 with the reason; a bad option or a queue name of unknown format is
bad usage (exit 2). Presigned URLs and the Label Studio API key are never printed.
"""
from __future__ import annotations

import json
import os

import click

from jobs.storage import StorageError
from jobs.text import plural
from jobs.tools.report.links import MAX_PRESIGN_EXPIRES, s3_presigner
from jobs.tools.review import (
    LabelStudio,
    ReviewError,
    Selection,
    diff_html,
    diff_json,
    diff_versions,
    format_diff,
    import_reviews,
    label_studio_tasks,
    queue_format,
    select_for_review,
    write_queue,
)
from stam_core.classes import load_class_names
from stam_core.storage import write_atomic

API_KEY_ENV = "LABEL_STUDIO_API_KEY"

labels_option = click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False), default=None,
                             help="Class names, one per line (default: the 400 Kinetics classes).")


@click.command("review")
@click.argument("output_uri", metavar="OUTPUT")
@click.argument("dest", metavar="FILE")
@click.option("--max-score", type=click.FloatRange(0, 1), default=None, metavar="S",
              help="Only videos whose top-1 score is below S.")
@click.option("--max-margin", type=click.FloatRange(0, 1), default=None, metavar="M",
              help="Only videos whose top-1 minus top-2 score is below M.")
@click.option("--per-class", type=click.IntRange(1), default=None, metavar="K",
              help="At most K videos per predicted class, the least certain first.")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N", help="At most N videos in all.")
@click.option("--include-reviewed", is_flag=True, help="Also queue videos that already have a human label.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default=None,
              help="json: Label Studio tasks (+ FILE's .label-config.xml); csv: video_uri,label,score,labels,"
                   "video_url. Default: FILE's extension.")
@click.option("--presign", "presign_s", type=click.IntRange(1, MAX_PRESIGN_EXPIRES), default=None, metavar="SECONDS",
              help="Give s3:// videos presigned https URLs valid SECONDS (default: keep s3:// URIs).")
@click.option("--to-label-studio", "ls_url", default=None, metavar="URL",
              help="Also import the tasks into a Label Studio project (--project), key in $LABEL_STUDIO_API_KEY.")
@click.option("--project", type=click.IntRange(1), default=None, help="The Label Studio project id.")
@labels_option
def review_command(output_uri: str, dest: str, max_score: float | None, max_margin: float | None,
                   per_class: int | None, limit: int | None, include_reviewed: bool, fmt: str | None,
                   presign_s: int | None, ls_url: str | None, project: int | None, labels_file: str | None) -> None:
    """Write the videos of OUTPUT that a person should check to FILE: the least certain first,
    only labelled (ok) videos, never one already reviewed unless --include-reviewed."""
    try:
        fmt = queue_format(dest, fmt)
    except ReviewError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None
    if (ls_url is None) != (project is None):
        raise click.UsageError("--to-label-studio and --project go together")
    class_names = load_class_names(labels_file)
    try:
        rows = select_for_review(output_uri, Selection(max_score, max_margin, per_class, limit, include_reviewed))
        presign = s3_presigner(presign_s) if presign_s else None
        written = write_queue(rows, dest, fmt, class_names, presign)
        click.echo(f"{plural(rows.num_rows, 'video')} to review: {', '.join(written)}")
        if ls_url:
            client = LabelStudio(ls_url, os.environ.get(API_KEY_ENV, ""))
            count = client.push(project, label_studio_tasks(rows, presign), class_names)
            click.echo(f"Label Studio {ls_url}: {plural(count, 'task')} imported into project {project}")
    except (ReviewError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("import-reviews")
@click.argument("output_uri", metavar="OUTPUT")
@click.argument("path", metavar="FILE")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid answers and report the others (default: any invalid answer imports nothing).")
@click.option("--reviewer", default=None, help="Who reviewed, for answers that name nobody (e.g. a CSV without it).")
@labels_option
def import_reviews_command(output_uri: str, path: str, skip_invalid: bool, reviewer: str | None,
                           labels_file: str | None) -> None:
    """Take annotators' labels from FILE (a Label Studio JSON export, or a CSV video_uri,label[,reviewer])
    into OUTPUT, in one transaction: human_label, reviewed_by, reviewed_at, and label = the human label."""
    try:
        result = import_reviews(output_uri, path, load_class_names(labels_file), skip_invalid=skip_invalid,
                                reviewer=reviewer)
    except (ReviewError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    for problem in result.skipped:
        click.echo(f"skipped: {problem}", err=True)
    where = f" (table version {result.version})" if result.version is not None else ""
    unanswered = f"; {plural(result.unanswered, 'task')} without an answer" if result.unanswered else ""
    click.echo(f"imported {plural(result.imported, 'human label')}{where}{unanswered}"
               + (f"; skipped {len(result.skipped)}" if result.skipped else ""))


@click.command("diff")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--from", "from_spec", required=True, metavar="V",
              help="The older version: a Delta version number, a run id, or an ISO timestamp.")
@click.option("--to", "to_spec", default=None, metavar="V", help="The newer version (default: the latest).")
@click.option("--limit", type=click.IntRange(0), default=100, show_default=True, help="Changed videos listed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the changes as an HTML page.")
def diff_command(output_uri: str, from_spec: str, to_spec: str | None, limit: int, as_json: bool,
                 html_path: str | None) -> None:
    """What changed in OUTPUT between two versions: how many videos changed their top-1 label, the
    largest class-to-class flows, and the videos that changed (human labels marked)."""
    try:
        result = diff_versions(output_uri, from_spec, to_spec, limit=limit)
    except (ReviewError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(diff_json(result), indent=2) if as_json else format_diff(result))
    if html_path:
        write_atomic(html_path, diff_html(result).encode())
        click.echo(f"page: {html_path}", err=as_json)
