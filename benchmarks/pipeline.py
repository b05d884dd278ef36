"""Throughput of decoding alone, the model alone, and the whole job, on N generated videos.

    .venv/bin/python benchmarks/pipeline.py --model stam_tiny --videos 6000
    .venv/bin/python benchmarks/pipeline.py --model stam_16 --videos 120

Every stage shares this machine's cores, so the ideal end-to-end rate is
1 / (1/decode_rate + 1/model_rate), each rate measured alone on the whole machine. The job's
rate is measured from the dataset's start to its last row, on a Ray started beforehand: it
includes starting Ray's workers and loading the model in the actor (printed as the time to
the first row), a fixed cost per run, so runs must be long enough (minutes) to measure the
streaming rate rather than the start-up. The end-to-end rate with every cost (Ray start,
the driver's weight check) is printed too.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_videos(folder: Path, n: int, unique: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    """`unique` distinct encodes, hard-linked up to n files: decoding costs the same per file."""
    from jobs.tools.samples import make_sample_video

    folder.mkdir(parents=True, exist_ok=True)
    sources = [make_sample_video(folder / f"v{i:05d}.mp4", seed=i, seconds=seconds, fps=25, size=size)
               for i in range(min(n, unique))]
    for i in range(len(sources), n):
        os.link(sources[i % len(sources)], folder / f"v{i:05d}.mp4")
    return sorted(folder.glob("*.mp4"))


def _decode(path: str, num_frames: int) -> None:
    import stam_core

    stam_core.read_clip(path, num_frames, timeout=60)


def decode_rate(paths: list[Path], num_frames: int, workers: int) -> float:
    # One process per core, as the pipeline runs one decode task per CPU.
    with cf.ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode, [str(paths[0])] * workers, [num_frames] * workers))  # warm up
        start = time.perf_counter()
        list(pool.map(_decode, [str(p) for p in paths], [num_frames] * len(paths)))
    return len(paths) / (time.perf_counter() - start)


def model_rate(weights: str, batch: int, batches: int) -> tuple[float, int, str]:
    import torch

    import stam_core.model

    torch.set_num_threads(os.cpu_count() or 1)
    model = stam_core.model.load_model(weights)
    frames = np.random.default_rng(0).integers(0, 255, (batch, model.num_frames, 224, 224, 3), dtype=np.uint8)
    with torch.inference_mode():
        model(stam_core.model.clips_to_tensor(frames, model.device))
        start = time.perf_counter()
        for _ in range(batches):
            model(stam_core.model.clips_to_tensor(frames, model.device))
    return batch * batches / (time.perf_counter() - start), model.num_frames, model.precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stam_tiny", help="stam_tiny or stam_8/16/32/64 (untrained weights)")
    ap.add_argument("--videos", type=int, default=60)
    ap.add_argument("--unique", type=int, default=100, help="distinct videos encoded; the rest are hard links")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    import ray
    import torch

    import stam_core.model
    from jobs.pipeline import JobConfig, run_job

    cores = os.cpu_count() or 1
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        weights = tmp / f"{args.model}.pth"
        stam_core.model.save_checkpoint(stam_core.model.create_model(args.model), weights)
        print(f"generating {args.videos} videos of {args.seconds:g} s at {args.size} (H.264, 25 fps)...", flush=True)
        paths = make_videos(tmp / "videos", args.videos, args.unique, args.seconds, size)

        model_vps, num_frames, precision = model_rate(str(weights), args.batch_size, max(2, 32 // args.batch_size))
        decode_vps = decode_rate(paths[: max(2 * args.unique, 4 * cores)], num_frames, cores)
        ideal = 1 / (1 / decode_vps + 1 / model_vps)

        config = JobConfig(input_uri=str(tmp / "videos"), output_uri=str(tmp / "out"), weights=str(weights),
                           batch_size=args.batch_size)
        started = time.time()
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")
        ray_startup = time.time() - started
        summary = run_job(config)
        assert summary.ok == args.videos, summary
        rate, first_row = summary.rate_from_start, summary.first_row_s

    print(f"\nmodel {args.model} (T={num_frames}, {precision}), {args.videos} videos, {cores} cores")
    print(f"  decode alone   {decode_vps:8.3f} videos/s  ({cores} processes)")
    print(f"  model alone    {model_vps:8.3f} videos/s  (batch {args.batch_size})")
    print(f"  ideal          {ideal:8.3f} videos/s  1/(1/decode + 1/model)")
    print(f"  pipeline       {rate:8.3f} videos/s  = {rate / ideal:.1%} of ideal, from the dataset's start "
          f"(first row after {first_row:.1f} s: workers start, the actor loads the model)")
    print(f"  pipeline e2e   {args.videos / (summary.elapsed_s + ray_startup):8.2f} videos/s  incl. Ray start-up "
          f"({ray_startup:.1f} s) and the driver's weight check ({summary.elapsed_s:.1f} s job in all)")


if __name__ == "__main__":
    main()
