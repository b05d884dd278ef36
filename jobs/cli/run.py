"""`stam-label run`: label INPUT into OUTPUT, print the run's summary (or the --dry-run plan), and
exit 1 over --max-error-rate. The summary printing is shared with the demo."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobs.cli.errors import Failure
from jobs.cli.options import config_option, run_options
from jobs.config import JobConfig
from jobs.errors import EXIT_TOO_MANY_ERRORS
from jobs.progress import format_duration
from jobs.text import cpu_time, plural

if TYPE_CHECKING:  # the run's modules load when it runs, not for --help
    from jobs.runs import RunSummary


def job_config(input_uri: str, output_uri: str, **opts) -> JobConfig:
    """The JobConfig of run's command line (``opts``: the values of its options)."""
    if opts.get("stride_s") is not None and opts.get("window_s") is None:
        raise click.UsageError("--stride-seconds needs --window-seconds")
    opts["extensions"] = tuple("." + e.strip().lstrip(".").lower() for e in opts["extensions"].split(",") if e.strip())
    return JobConfig(input_uri=input_uri, output_uri=output_uri, **opts)


@click.command("run")
@click.argument("input_uri", metavar="INPUT")
@click.argument("output_uri", metavar="OUTPUT")
@config_option
@run_options
def run_command(input_uri: str, output_uri: str, **opts) -> None:
    """Label every video under INPUT and commit the rows to OUTPUT.

    INPUT is a local folder, an s3://bucket/prefix (both recursive) or a manifest file
    (.txt one URI per line; .csv/.parquet with a video_uri column). OUTPUT is a local folder
    or an s3:// prefix. Videos already labelled with the same weights are skipped.
    """
    from jobs import preflight

    config = job_config(input_uri, output_uri, **opts)
    # INPUT and OUTPUT first, in well under a second: before Ray starts and before OUTPUT is made.
    preflight.check(config.input_uri, config.output_uri, dry_run=config.dry_run)
    from jobs.pipeline import run_job  # Ray and torch: not for --help

    summary = run_job(config)
    if opts.get("dry_run"):
        print_plan(summary)
        return
    print_summary(summary)
    check_error_rate(summary, config.max_error_rate)


def check_error_rate(summary: RunSummary, max_error_rate: float) -> None:
    """Exit 1 when every labelled video failed, or more than max_error_rate of them."""
    where = f"the rows are committed in {summary.output_uri}"
    if summary.processed and not summary.ok:
        raise Failure(f"all {plural(summary.processed, 'labelled video')} failed; {where}", EXIT_TOO_MANY_ERRORS)
    if summary.error_rate > max_error_rate:
        raise Failure(f"{summary.error} of {plural(summary.processed, 'video')} failed ({summary.error_rate:.1%}), "
                      f"above --max-error-rate {max_error_rate:.1%}; {where}", EXIT_TOO_MANY_ERRORS)


def print_summary(summary: RunSummary) -> None:
    """What a run prints at its end (stdout): counts, rate, error rate and kinds, cost, output."""
    rate = summary.processed / summary.elapsed_s if summary.elapsed_s else 0.0
    click.echo("")
    click.echo(f"run {summary.run_id}: {summary.ok} ok, {summary.error} error, {summary.skipped} skipped "
               f"(of {summary.listed} listed) in {format_duration(summary.elapsed_s)} "
               f"({summary.elapsed_s:.1f} s of wall time since the run started), {rate:.2f} videos/s")
    if summary.processed:
        click.echo(f"error rate: {summary.error_rate:.1%} ({summary.error} of {plural(summary.processed, 'labelled video')})")
    for kind, count in sorted(summary.error_kinds.items(), key=lambda kv: -kv[1])[:5]:
        click.echo(f"  {count:6d} x {kind}: e.g. {summary.error_examples.get(kind, '')[:160]}")
    if summary.processed:
        hours = summary.footage_s / 3600
        per_hour = (f"; per hour of footage: {summary.decode_cpu_s / hours:.0f} decode CPU-s, "
                    f"{summary.model_s / hours:.0f} model s") if hours else ""
        click.echo(f"cost: decode {summary.decode_cpu_s:.1f} CPU-s, model {summary.model_s:.1f} s "
                   f"for {plural(summary.processed, 'video')} ({summary.footage_s / 60:.1f} min of footage){per_hour}")
    click.echo(f"output: {summary.output_uri} ({plural(summary.commits, 'commit')})")


def print_plan(summary: RunSummary) -> None:
    """What --dry-run found: nothing was labelled or written."""
    click.echo(f"dry run: {plural(summary.listed, 'video')} listed, {summary.skipped} already labelled, "
               f"{summary.total} to label ({cpu_time(summary.estimated_decode_cpu_h, estimate=True)} of decoding)")
    for uri in summary.first_uris:
        click.echo(f"  {uri}")
    if summary.total > len(summary.first_uris):
        click.echo(f"  ... and {summary.total - len(summary.first_uris)} more")
