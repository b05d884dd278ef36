"""The demo: generated sample videos, a local S3 server, a local Ray, S3 -> S3, a label table.

It tries the official stam_16 weights first. Offline (as on a machine that only reaches
package registries) it says so and uses an untrained model, marked "(untrained)" in every
row's `model` column. Only the demo does this; `stam-label run` never falls back.

Its local S3 server is moto (``jobs/demo_s3.py``), which comes with the ``demo`` extra
(``pip install 'stam-label[demo]'``); without it the demo stops at once with that hint.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

BUCKET = "stam-demo"


def make_sample_video(path: Path, seed: int, seconds: float = 3.0, fps: int = 15, size=(320, 240)) -> Path:
    """A short H.264 clip: a disc moving over a slowly panning textured background.

    Content that moves coherently (not per-frame noise) encodes and decodes like camera footage.
    """
    import av
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 160, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((width + 16, height + 16), Image.BILINEAR))
    yy, xx = np.mgrid[0:height, 0:width]
    colour = rng.integers(60, 255, size=3)
    radius = 10 + (7 * seed) % 25
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            t = i / fps
            shift = int(8 + 8 * np.sin(2 * np.pi * t / seconds))
            img = texture[shift:shift + height, shift:shift + width].copy()
            cx = width / 2 + width / 3 * np.sin(2 * np.pi * t / seconds + seed)
            cy = height / 2 + height / 4 * np.cos(2 * np.pi * t / seconds)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < radius ** 2] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _weights(requested: str, workdir: Path) -> tuple[str, str | None]:
    """(weights to use, model name override). Falls back to untrained weights, loudly."""
    import stam_core

    try:
        return str(stam_core.resolve_weights(requested)), None
    except (OSError, stam_core.CheckpointError) as exc:
        click.secho(f"Could not get the official {requested} weights ({str(exc).splitlines()[0][:200]}).",
                    fg="yellow", err=True)
        click.secho("The demo continues with an UNTRAINED model: its labels are meaningless and every row is "
                    "marked '(untrained)'.", fg="yellow", bold=True, err=True)
    variant = requested if requested in stam_core.RELEASES else "stam_16"
    torch = __import__("torch")
    torch.manual_seed(0)
    path = workdir / f"{variant}-untrained.pth"
    stam_core.save_checkpoint(stam_core.create_model(variant), path)
    return str(path), f"{variant} (untrained)"


def run_demo(num_videos: int = 6, weights: str = "stam_16") -> int:
    from jobs.demo_s3 import LocalS3
    from jobs.pipeline import JobConfig, run_job
    from jobs.summary import print_summary
    from jobs.table import LabelTable

    with tempfile.TemporaryDirectory(prefix="stam-demo-") as tmp, LocalS3() as s3:
        workdir = Path(tmp)
        click.echo(f"local S3 server at {s3.endpoint}; generating {num_videos} sample videos")
        s3.create_bucket(BUCKET)
        for i in range(num_videos):
            video = make_sample_video(workdir / f"sample_{i:02d}.mp4", seed=i)
            s3.upload(video, f"s3://{BUCKET}/videos/{video.name}")
        broken = workdir / "broken.mp4"
        broken.write_bytes(b"this is not a video")
        s3.upload(broken, f"s3://{BUCKET}/videos/{broken.name}")

        weights_path, model_name = _weights(weights, workdir)
        config = JobConfig(input_uri=f"s3://{BUCKET}/videos/", output_uri=f"s3://{BUCKET}/labels/",
                           weights=weights_path, model_name=model_name, batch_size=4)
        summary = run_job(config)
        print_summary(summary)

        table = LabelTable(config.output_uri).read_current(["video_uri", "status", "labels", "scores", "error",
                                                            "model"])
        click.echo(f"\nlabel table (s3://{BUCKET}/labels/), model {table['model'][0]}:")
        for row in sorted(table.to_pylist(), key=lambda r: r["video_uri"]):
            name = row["video_uri"].rsplit("/", 1)[-1]
            if row["status"] == "ok":
                top = ", ".join(f"{label} {score:.2f}" for label, score in zip(row["labels"][:3], row["scores"][:3]))
                click.echo(f"  {name:16s} ok     {top}")
            else:
                click.echo(f"  {name:16s} error  {row['error'][:100]}")
    return 0
