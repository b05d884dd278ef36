"""Planning at archive scale: a manifest of N URIs against a label table of N rows, 90% done.

    .venv/bin/python benchmarks/scale.py --n 100000 1000000
    .venv/bin/python benchmarks/scale.py --n 5000000 --timeout 600

No video is decoded. For each N it writes, in a temporary folder:

  * a tiny checkpoint (``stam_core.model.save_checkpoint(create_model("stam_tiny"))``);
  * MANIFEST.parquet: video_uri (``s3://bucket/videos/<9 digits>.mp4``), size, source_version,
    so the listing stats nothing;
  * OUTPUT, a Delta label table of the same N videos (benchmarks/table.py's rows, layout as
    ``stam-label optimize`` leaves it unless --layout commits): weights_sha256 = the checkpoint's
    sha256, mode "video", segment_index 0, status "ok", source_version equal to the manifest's for
    90% of the URIs (every 10th differs), so 10% are still to label.

Then it runs the real command in a fresh process under ``/usr/bin/time -v``:

    stam-label run MANIFEST OUTPUT --dry-run --weights CHECKPOINT

through a thin wrapper (``--cli``) that only timestamps the steps (Ray connected, plan built,
first work item taken) and reads the driver's own peak RSS (VmHWM) at exit. /usr/bin/time's
"Maximum resident set size" is the largest of the driver and the children it reaped (Ray's
processes), so both are printed; the driver's own figure is the one the goal is about.
Plans above jobs.plan.LOCAL_PLAN_MAX_ROWS (200k) use Ray's join and sort; smaller ones Arrow on
the driver.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

T0 = time.time()


def cli_child(argv: list[str]) -> None:
    """`stam-label <argv>` with timestamps; prints a TIMES line on stderr at exit."""
    import atexit
    import threading

    times: dict[str, float] = {"imports_start": T0}
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB) every 0.2 s

    def rss() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    def sample() -> None:
        while True:
            samples.append((time.time() - T0, rss()))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()

    def peak() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))

    def report() -> None:
        times["exit"] = time.time()
        marks = sorted((v - T0, k) for k, v in times.items())
        phases = {}  # the sampled RSS peak of each step (named by the mark that ends it)
        for (start, _), (end, name) in itertools.pairwise(marks):
            inside = [r for t, r in samples if start <= t <= end]
            if inside:
                phases[name] = round(max(inside), 1)
        print("TIMES " + json.dumps({"times": {k: round(v - T0, 3) for k, v in times.items()},
                                     "driver_peak_rss_mb": peak(), "rss_peak_by_step_mb": phases}),
              file=sys.stderr, flush=True)

    atexit.register(report)
    from jobs import pipeline, plan

    times["imports_done"] = time.time()
    connect, build, dry = pipeline.connect_ray, plan.build, pipeline._dry_run

    def timed_connect(*a, **k):
        times["ray_start"] = time.time()
        out = connect(*a, **k)
        times["ray_connected"] = time.time()
        return out

    def timed_build(*a, **k):
        times["plan_start"] = time.time()
        out = build(*a, **k)
        times["plan_built"] = time.time()
        return out

    def timed_dry(*a, **k):
        out = dry(*a, **k)
        times["first_items_taken"] = time.time()  # the plan's first ten URIs are known
        return out

    import stam_core.checkpoint_header  # the driver reads the header without torch

    check = stam_core.checkpoint_header.read_info

    def timed_check(*a, **k):
        times["weights_check_start"] = time.time()
        out = check(*a, **k)
        times["weights_checked"] = time.time()
        return out

    pipeline.connect_ray, plan.build, pipeline._dry_run = timed_connect, timed_build, timed_dry
    stam_core.checkpoint_header.read_info = timed_check
    from jobs.cli import main

    try:
        main(argv, prog_name="stam-label")
    except SystemExit as exc:
        if exc.code:
            raise


def make_inputs(folder: Path, n: int, layout: str) -> tuple[Path, Path, Path, float]:
    import pyarrow.parquet as pq
    import torch
    from table import build_table

    import stam_core.model

    start = time.perf_counter()
    torch.manual_seed(0)
    weights = folder / "stam_tiny.pth"
    stam_core.model.save_checkpoint(stam_core.model.create_model("stam_tiny"), weights)
    sha = stam_core.file_sha256(weights)
    numbers = np.arange(n, dtype=np.int64) * 4
    rng = np.random.default_rng(0)
    sizes = rng.integers(1 << 20, 1 << 30, n)
    versions = [f"{s}:{1_700_000_000_000_000_000 + int(i)}" for s, i in zip(sizes, numbers)]
    manifest = folder / "manifest.parquet"
    pq.write_table(pa.table({"video_uri": pa.array([f"s3://bucket/videos/{i:09d}.mp4" for i in numbers]),
                             "size": pa.array(sizes), "source_version": pa.array(versions)}),
                   manifest, row_group_size=100_000)
    # The table: the same videos, every 10th labelled from an older version of its file.
    table_versions = [("old:" + v if i % 10 == 0 else v) for i, v in enumerate(versions)]
    output = folder / "labels"
    build_table(str(output), n, layout, sha=sha, versions=table_versions)
    return manifest, output, weights, time.perf_counter() - start


def parse_time_v(text: str) -> dict:
    out = {}
    for key, pattern in (("max_rss_mb_time_v", r"Maximum resident set size \(kbytes\): (\d+)"),
                         ("wall_s", r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)"),
                         ("user_s", r"User time \(seconds\): ([\d.]+)"),
                         ("sys_s", r"System time \(seconds\): ([\d.]+)")):
        m = re.search(pattern, text)
        if not m:
            continue
        value = m.group(1)
        if key == "max_rss_mb_time_v":
            out[key] = int(value) / 1024
        elif key == "wall_s":
            parts = [float(p) for p in value.split(":")]
            out[key] = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
        else:
            out[key] = float(value)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cli":
        return cli_child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--layout", choices=("compacted", "commits"), default="compacted")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for one dry run")
    ap.add_argument("--keep", help="build the inputs in this folder and keep them")
    args = ap.parse_args()

    from table import cpu_info

    print(cpu_info(), flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.keep) as tmp:
        for n in args.n:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            manifest, output, weights, made = make_inputs(folder, n, args.layout)
            print(f"\nN={n}: inputs made in {made:.1f} s", flush=True)
            cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--cli", "run", str(manifest), str(output),
                   "--dry-run", "--weights", str(weights)]
            env = dict(os.environ)
            env.pop("RAY_ADDRESS", None)  # a fresh local Ray, as a plain run starts
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
            except subprocess.TimeoutExpired:
                print(f"  timed out after {args.timeout:.0f} s", flush=True)
                results[n] = {"timed_out": args.timeout}
                continue
            times = [json.loads(line[len("TIMES "):]) for line in proc.stderr.splitlines()
                     if line.startswith("TIMES ")]
            if proc.returncode or not times:
                print(proc.stdout[-2000:], proc.stderr[-4000:])
                raise SystemExit(f"dry run failed ({proc.returncode})")
            t = times[-1]["times"]
            res = {"n": n, **parse_time_v(proc.stderr), "driver_peak_rss_mb": times[-1]["driver_peak_rss_mb"],
                   "rss_peak_by_step_mb": times[-1]["rss_peak_by_step_mb"],
                   "imports_s": t["imports_done"], "ray_up_s": t["ray_connected"] - t["ray_start"],
                   "planning_s": t["plan_built"] - t["plan_start"],
                   "first_item_from_plan_start_s": t["first_items_taken"] - t["plan_start"],
                   "first_item_from_process_start_s": t["first_items_taken"], "times": t,
                   "dry_run_says": proc.stdout.splitlines()[0] if proc.stdout else ""}
            results[n] = res
            print("  " + json.dumps(res), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    print("\nRESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
