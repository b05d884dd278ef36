"""The `stam-label` command: composable click subcommands over jobs.pipeline and jobs.table."""
from __future__ import annotations

import logging
import sys

import click

from jobs.storage import DEFAULT_EXTENSIONS, StorageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """Label video archives with the STAM action-recognition model on Ray."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        # Their debug logs carry request signatures (access key ids); never show them.
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_options(fn):
    """Options shared by `run` and `demo`."""
    options = [
        click.option("--weights", default="stam_16", show_default=True,
                     help="Release name (stam_8/16/32/64), local path, http(s) or s3:// URL of a checkpoint."),
        click.option("--weights-sha256", default=None, help="Refuse weights whose sha256 differs."),
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
                     help="Clips per model forward pass (raise it on GPUs: 32-128)."),
        click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Labels kept per row."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help="Model precision; auto picks bf16/fp16 where the device runs it fast."),
        click.option("--decode-workers", type=click.IntRange(1), default=None,
                     help="CPU cores to decode on, at most (default: every CPU Ray can give them); "
                          "two decode tasks run per core."),
        click.option("--model-workers", type=click.IntRange(1), default=1, show_default=True,
                     help="Model actors (one per GPU on a GPU cluster)."),
        click.option("--gpus-per-worker", type=float, default=1.0, show_default=True,
                     help="GPUs per model actor when the cluster has GPUs (fractions share a GPU)."),
        click.option("--model-threads", type=click.IntRange(1), default=None,
                     help="CPU inference threads per model actor without a GPU (default: all cores)."),
        click.option("--address", envvar="RAY_ADDRESS", default=None,
                     help="Ray cluster to join (also RAY_ADDRESS); default: start a local Ray."),
        click.option("--limit", type=click.IntRange(1), default=None, help="Label at most N listed videos."),
        click.option("--max-error-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True,
                     help="Exit non-zero when more than this share of labelled videos failed."),
        click.option("--relabel", is_flag=True, help="Label every video again, even those already labelled."),
        click.option("--decode-timeout", type=float, default=120.0, show_default=True,
                     help="Seconds one video may take to decode before it becomes an error row."),
        click.option("--extensions", default=",".join(e.lstrip(".") for e in DEFAULT_EXTENSIONS),
                     show_default=True, help="Video file extensions picked from folders and prefixes."),
        click.option("--rows-per-file", type=click.IntRange(1), default=2000, show_default=True,
                     help="Rows per committed Parquet file (also how much a killed run can lose)."),
        click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Class names, one per line, for checkpoints fine-tuned on other classes."),
        click.option("--window-seconds", "window_s", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Label each window of W seconds (plus a video-level row, segment_index -1)."),
        click.option("--stride-seconds", "stride_s", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds between window starts (default: the window length)."),
        click.option("--embeddings", is_flag=True, help="Add the 768-d video embedding column."),
        click.option("--probs", is_flag=True, help="Add the full probability vector column."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _config(input_uri: str, output_uri: str, **opts):
    from jobs.pipeline import JobConfig

    if opts.get("stride_s") is not None and opts.get("window_s") is None:
        raise click.UsageError("--stride-seconds needs --window-seconds")
    opts["extensions"] = tuple("." + e.strip().lstrip(".").lower() for e in opts["extensions"].split(",") if e.strip())
    return JobConfig(input_uri=input_uri, output_uri=output_uri, **opts)


@main.command()
@click.argument("input_uri", metavar="INPUT")
@click.argument("output_uri", metavar="OUTPUT")
@run_options
def run(input_uri: str, output_uri: str, **opts) -> None:
    """Label every video under INPUT and commit the rows to OUTPUT.

    INPUT is a local folder, an s3://bucket/prefix (both recursive) or a manifest file
    (.txt one URI per line; .csv/.parquet with a video_uri column). OUTPUT is a local folder
    or an s3:// prefix. Videos already labelled with the same weights are skipped.
    """
    summary = _run(_config(input_uri, output_uri, **opts))
    if summary.error_rate > opts["max_error_rate"]:
        raise click.ClickException(
            f"{summary.error} of {summary.processed} videos failed ({summary.error_rate:.1%}), "
            f"above --max-error-rate {opts['max_error_rate']:.1%}; the rows are committed in {output_uri}")


def _run(config):
    from jobs.pipeline import JobError, run_job

    try:
        summary = run_job(config)
    except (JobError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    print_summary(summary)
    return summary


def print_summary(summary) -> None:
    rate = summary.processed / summary.elapsed_s if summary.elapsed_s else 0.0
    click.echo("")
    click.echo(f"run {summary.run_id}: {summary.ok} ok, {summary.error} error, {summary.skipped} skipped "
               f"(of {summary.listed} listed) in {summary.elapsed_s:.1f} s, {rate:.2f} videos/s")
    for kind, count in sorted(summary.error_kinds.items(), key=lambda kv: -kv[1])[:5]:
        click.echo(f"  {count:6d} x {kind}: e.g. {summary.error_examples.get(kind, '')[:160]}")
    click.echo(f"output: {summary.output_uri} ({len(summary.files)} new files; run manifest in _runs/)")


@main.command()
@click.option("--videos", type=click.IntRange(1), default=6, show_default=True, help="Sample videos to generate.")
@click.option("--weights", default="stam_16", show_default=True, help="Weights to try first.")
def demo(videos: int, weights: str) -> None:
    """Label generated sample videos S3 -> S3 on a local S3 server and a local Ray."""
    from jobs.demo import run_demo

    sys.exit(run_demo(num_videos=videos, weights=weights))


# Subcommands that live beside the code they drive (click's composable commands).
from jobs.evaluate import evaluate_command  # noqa: E402
from jobs.export import export_command  # noqa: E402
from jobs.report import inspect_command  # noqa: E402

main.add_command(export_command)
main.add_command(evaluate_command)
main.add_command(inspect_command)
