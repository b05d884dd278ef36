"""The demo's pieces: sample videos in a local S3 bucket, its weights, its JobConfig, its label rows.

`stam-label demo` (jobs.cli.demo) puts them together: generated sample videos, a local S3
server, a local Ray, S3 -> S3, a label table. It tries the official stam_16 weights first.
Offline (as on a machine that only reaches package registries) ``demo_weights`` says why and
gives an untrained model, marked "(untrained)" in every row's `model` column. Only the demo
does this; `stam-label run` never falls back.

Its local S3 server is moto (``jobs/tools/demo_s3.py``), which comes with the ``demo`` extra
(``pip install 'stam-label[demo]'``); without it the demo stops at once with that hint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.config import JobConfig
from jobs.table import LabelTable
from jobs.tools.demo_s3 import LocalS3
from jobs.tools.samples import make_sample_video

BUCKET = "stam-demo"
VIDEOS = f"s3://{BUCKET}/videos/"
LABELS = f"s3://{BUCKET}/labels/"
ROW_COLUMNS = ["video_uri", "status", "labels", "scores", "error", "model"]


@dataclass(frozen=True)
class DemoWeights:
    path: str
    model_name: str | None  # the `model` column; "<variant> (untrained)" for the fallback
    problem: str | None = None  # why the official weights could not be had; None when they were


def stage_videos(s3: LocalS3, workdir: Path, num_videos: int) -> None:
    """The demo's bucket: ``num_videos`` generated sample videos and one broken file (an error row)."""
    s3.create_bucket(BUCKET)
    for i in range(num_videos):
        video = make_sample_video(workdir / f"sample_{i:02d}.mp4", seed=i)
        s3.upload(video, VIDEOS + video.name)
    broken = workdir / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    s3.upload(broken, VIDEOS + broken.name)


def demo_weights(requested: str, workdir: Path) -> DemoWeights:
    """The requested weights; when they cannot be had, untrained ones of the same variant, saying why."""
    import stam_core.model  # torch: only once the demo runs

    try:
        return DemoWeights(str(stam_core.resolve_weights(requested)), None)
    except (OSError, stam_core.CheckpointError) as exc:
        problem = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    variant = requested if requested in stam_core.RELEASES else "stam_16"
    import torch

    torch.manual_seed(0)
    path = workdir / f"{variant}-untrained.pth"
    stam_core.model.save_checkpoint(stam_core.model.create_model(variant), path)
    return DemoWeights(str(path), f"{variant} (untrained)", problem)


def demo_config(weights: DemoWeights) -> JobConfig:
    """The demo's job: the bucket's videos to its labels, JobConfig's defaults otherwise."""
    # Batches of 4: a handful of short videos on one machine.
    return JobConfig(input_uri=VIDEOS, output_uri=LABELS, weights=weights.path, model_name=weights.model_name,
                     batch_size=4)


def label_rows(output_uri: str) -> list[dict]:
    """The label table's current rows (ROW_COLUMNS), by video_uri."""
    table = LabelTable(output_uri).read_current(ROW_COLUMNS)
    return sorted(table.to_pylist(), key=lambda r: r["video_uri"]) if table is not None else []
