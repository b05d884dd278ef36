"""`stam-label demo`: label generated sample videos S3 -> S3 on a local S3 server and a local Ray."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from jobs.cli.options import option
from jobs.cli.run import print_summary
from jobs.tools.demo import demo_config, demo_weights, label_rows, stage_videos
from jobs.tools.demo_s3 import LocalS3


@click.command("demo")
@click.option("--videos", type=click.IntRange(1), default=6, show_default=True, help="Sample videos to generate.")
@option("weights", help="Weights to try first (when they cannot be fetched: an untrained model, marked so).")
def demo_command(videos: int, weights: str) -> None:
    """Label generated sample videos S3 -> S3 on a local S3 server and a local Ray.

    Needs the demo extra (its local S3 server): pip install 'stam-label[demo]'.
    """
    from jobs.pipeline import run_job  # Ray and torch: not for --help

    with tempfile.TemporaryDirectory(prefix="stam-demo-") as tmp, LocalS3() as s3:
        workdir = Path(tmp)
        click.echo(f"local S3 server at {s3.endpoint}; generating {videos} sample videos")
        stage_videos(s3, workdir, videos)
        got = demo_weights(weights, workdir)
        if got.problem:
            click.secho(f"Could not get the official {weights} weights ({got.problem}).", fg="yellow", err=True)
            click.secho("The demo continues with an UNTRAINED model: its labels are meaningless and every row is "
                        "marked '(untrained)'.", fg="yellow", bold=True, err=True)
        config = demo_config(got)
        print_summary(run_job(config))

        rows = label_rows(config.output_uri)
        click.echo(f"\nlabel table ({config.output_uri}), model {rows[0]['model'] if rows else '-'}:")
        for row in rows:
            name = row["video_uri"].rsplit("/", 1)[-1]
            if row["status"] == "ok":
                top = ", ".join(f"{label} {score:.2f}" for label, score in zip(row["labels"][:3], row["scores"][:3]))
                click.echo(f"  {name:16s} ok     {top}")
            else:
                click.echo(f"  {name:16s} error  {row['error'][:100]}")
