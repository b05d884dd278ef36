"""A nightly run at archive scale: `stam-label run` of a few new videos into a table of N others.

    .venv/bin/python benchmarks/run_at_scale.py --rows 1000000 10000000 --new 10
    .venv/bin/python benchmarks/run_at_scale.py --rows 1000000 --new 10 --relabel 5

For each N, in a temporary folder: a label table of N synthetic videos (benchmarks/table_rows.py,
the layout `stam-label optimize` leaves) whose URIs are ``<folder>/videos/<9 digits>.mp4``,
and --new real 1-s videos (jobs/tools/samples.py) at numbers between theirs, spread over the
table, in that same folder (the table's own videos are not on disk, so the folder lists only the
new ones). Then, in a fresh process, the real command with a tiny checkpoint:

    stam-label run <folder>/videos OUTPUT --weights stam_tiny.pth

and its wall time, and the run record's timings (plan_s, commit_s, wall_s) and rows_rewritten.
With --relabel K, the K first new videos are labelled again with `--relabel` (rows of the
table: the run relabels videos it labelled itself, spread over the table).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_inputs(folder: Path, rows: int, new: int) -> tuple[Path, Path, Path]:
    import torch
    from table_rows import STEP, build_table

    import stam_core.model
    from jobs.tools.samples import make_sample_video

    torch.manual_seed(0)
    weights = folder / "stam_tiny.pth"
    stam_core.model.save_checkpoint(stam_core.model.create_model("stam_tiny"), weights)
    videos = folder / "videos"
    videos.mkdir()
    output = folder / "labels"
    start = time.perf_counter()
    build_table(str(output), rows, "compacted", prefix=f"{videos}/")
    print(f"  table of {rows} rows built in {time.perf_counter() - start:.1f} s", flush=True)
    rng = np.random.default_rng(0)
    for number in np.sort(rng.choice(rows, new, replace=False)) * STEP + 1:
        make_sample_video(videos / f"{int(number):09d}.mp4", seed=int(number), seconds=1.0, size=(64, 48))
    return weights, videos, output


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("stam-label")), "run", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def last_record(output: Path) -> dict:
    records = [json.loads(p.read_text()) for p in (output / "_runs").glob("*.json")]
    return max(records, key=lambda r: r.get("started_at", ""))


def main() -> None:
    from table import cpu_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--new", type=int, default=10)
    ap.add_argument("--relabel", type=int, default=0)
    args = ap.parse_args()
    print(cpu_info(), flush=True)
    results = {}
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            weights, videos, output = make_inputs(Path(tmp), rows, args.new)
            res = results[rows] = {}
            wall = run([str(videos), str(output), "--weights", str(weights)])
            rec = last_record(output)
            res["new"] = {"wall_s": round(wall, 1), "timings": rec.get("timings"),
                          "rows_rewritten": rec["counts"].get("rows_rewritten"), "ok": rec["counts"].get("ok")}
            print(f"  {rows} rows, {args.new} new: {json.dumps(res['new'])}", flush=True)
            if args.relabel:
                subset = Path(tmp) / "subset.txt"
                subset.write_text("".join(f"{p}\n" for p in sorted(videos.glob("*.mp4"))[:args.relabel]))
                wall = run([str(subset), str(output), "--weights", str(weights), "--relabel"])
                rec = last_record(output)
                res["relabel"] = {"wall_s": round(wall, 1), "timings": rec.get("timings"),
                                  "rows_rewritten": rec["counts"].get("rows_rewritten"),
                                  "ok": rec["counts"].get("ok")}
                print(f"  {rows} rows, --relabel {args.relabel}: {json.dumps(res['relabel'])}", flush=True)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
