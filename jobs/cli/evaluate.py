"""`stam-label evaluate`: top-1/top-5 accuracy of --weights on a labelled manifest (jobs.tools.evaluate).

Every option it has in common with `run` is run's own definition (jobs.cli.options), so the
two cannot drift apart. Exit 3 for an unusable manifest (EvaluationError is a JobError), exit 1
when no video could be labelled.
"""
from __future__ import annotations

import json

import click

from jobs.cli.errors import Failure, cli_errors
from jobs.cli.options import config_option, option, shared_options
from jobs.errors import EXIT_TOO_MANY_ERRORS
from jobs.tools.evaluate import evaluate, format_report

# run's options that make sense for an evaluation: the model, its placement, decoding.
EVALUATE_RUN_OPTIONS = ("weights_sha256", "labels_file", "batch_size", "precision", "decode_workers", "model_workers",
                        "gpus_per_worker", "model_threads", "address", "decode_timeout", "progress_interval_s")


@click.command("evaluate")
@click.argument("manifest", metavar="MANIFEST")
@option("weights", required=True, default=None, show_default=False)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the full report (top1, top5, count, per-class, confused pairs, failed) as JSON.")
@click.option("--video-root", default=None,
              help="Folder or s3:// prefix of the videos (needed for Kinetics annotation CSVs; "
                   "relative video_uri values are resolved against it).")
@click.option("--output", "output_uri", default=None,
              help="Keep the label rows in this OUTPUT (reused: already labelled videos are skipped). "
                   "Default: a temporary folder, removed afterwards.")
@config_option
@shared_options(*EVALUATE_RUN_OPTIONS)
@cli_errors
def evaluate_command(manifest: str, json_path: str | None, video_root: str | None, output_uri: str | None,
                     **opts) -> None:
    """Measure top-1/top-5 accuracy of --weights on the labelled videos of MANIFEST.

    MANIFEST is a CSV with video_uri,label (label = a class name), or a Kinetics annotation
    CSV (label,youtube_id,time_start,time_end,split) with --video-root. The videos run through
    the same pipeline as `stam-label run`; failed videos are counted and listed.
    """
    result = evaluate(manifest, opts, video_root=video_root, output_uri=output_uri)
    click.echo(format_report(result))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result.as_dict(), f, indent=2)
        click.echo(f"report: {json_path}")
    if result.evaluated == 0:
        raise Failure("no video of the manifest could be labelled; nothing was measured", EXIT_TOO_MANY_ERRORS)
