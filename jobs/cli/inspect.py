"""`stam-label inspect`: a label table's summary, and on request its HTML report and label chart (jobs.tools.report).

An OUTPUT with nothing to report on, or --presign without usable AWS credentials, exits 1
with one line; a presigned URL itself is never printed (it carries a signature).
"""
from __future__ import annotations

import click

from jobs.storage import StorageError
from jobs.text import plural
from jobs.tools.report import (
    CLI_WORKERS,
    LOW_CONFIDENCE,
    MAX_PRESIGN_EXPIRES,
    PRESIGN_EXPIRES,
    READ_COLUMNS,
    SUMMARY_COLUMNS,
    ReportError,
    duration,
    format_costs,
    format_summary,
    load,
    render_html,
    s3_presigner,
    write_plot,
    write_report,
)


def _presign_failure(exc: Exception) -> click.ClickException:
    return click.ClickException(f"--presign: cannot sign S3 URLs ({type(exc).__name__}: {exc})")


@click.command("inspect")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write a static, self-contained HTML report (chart, thumbnails, top-5 labels, failures, "
                   "sorting and filtering by label, score and status).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the label-frequency bar chart as a PNG.")
@click.option("--max-videos", type=click.IntRange(1), default=200, show_default=True,
              help="Videos shown with thumbnails in --html (and failed videos listed); the rest are counted.")
@click.option("--top", type=click.IntRange(1), default=15, show_default=True, help="Labels listed in the summary.")
@click.option("--workers", type=click.IntRange(1), default=CLI_WORKERS, show_default="up to 4, one per core",
              help="Processes decoding thumbnails in parallel.")
@click.option("--low-confidence", type=click.FloatRange(0, 1), default=LOW_CONFIDENCE, show_default=True,
              help="In --html, highlight videos and windows whose top-1 score is below this.")
@click.option("--presign", is_flag=True,
              help="In --html, link s3:// videos with presigned URLs (signed locally with your AWS "
                   "credentials; anyone with the page can open them until they expire). Without it "
                   "s3:// URIs are shown as text.")
@click.option("--presign-expires", type=click.IntRange(1, MAX_PRESIGN_EXPIRES), default=PRESIGN_EXPIRES,
              show_default=True, metavar="SECONDS", help="How long presigned links stay valid (at most 7 days).")
@click.option("--hourly-price", type=click.FloatRange(0), default=None, metavar="PRICE",
              help="Price of the cluster per hour: also print the price per video and per footage hour "
                   "(from the runs' wall time).")
def inspect_command(output_uri: str, html_path: str | None, plot_path: str | None, max_videos: int, top: int,
                    workers: int, low_confidence: float, presign: bool, presign_expires: int,
                    hourly_price: float | None) -> None:
    """Summarise the label table in OUTPUT: counts by status, frequent labels, error kinds and,
    where the run records have them, the cost per video and per hour of footage.

    With --html, also write a page to check labels by eye; with --plot, the label chart as PNG.
    """
    try:
        # The text needs a few columns; the page also the frames' indices and the segment bounds.
        table, summary = load(output_uri, READ_COLUMNS if html_path else SUMMARY_COLUMNS)
    except (ReportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(summary, top=top))
    click.echo("\n".join(format_costs(summary.runs, hourly_price)))
    if plot_path:
        write_plot(summary.labels, plot_path)
        click.echo(f"chart: {plot_path}")
    if html_path:
        presigner = None
        if presign:
            try:
                presigner = s3_presigner(presign_expires)
            except Exception as exc:  # boto3 missing or misconfigured: say why, never a URL
                raise _presign_failure(exc) from None
        shown = min(max_videos, summary.status.get("ok", 0))
        click.echo(f"reading thumbnails of {plural(shown, 'video')} ...")
        try:
            page = render_html(table, summary, max_videos=max_videos, workers=workers, low_confidence=low_confidence,
                               presign=presigner, presign_expires=presign_expires, hourly_price=hourly_price)
        except Exception as exc:
            # Only signing errors (botocore's) are the user's to fix; anything else is a bug.
            if presigner is None or type(exc).__module__.split(".")[0] not in ("botocore", "boto3"):
                raise
            raise _presign_failure(exc) from None
        write_report(html_path, page)
        if presigner is not None:
            # Never the URLs themselves: they carry signatures and stay out of logs and terminals.
            click.echo(f"video links: s3:// videos presigned, valid {duration(presign_expires)}")
        click.echo(f"report: {html_path}")
