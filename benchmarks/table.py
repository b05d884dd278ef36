"""The label table at 100k and 1M current rows: commit cost, rewrite amplification, skip-set memory.

    .venv/bin/python benchmarks/table.py --rows 100000 1000000
    .venv/bin/python benchmarks/table.py --rows 100000 --s3          # the same on moto (local S3)
    .venv/bin/python benchmarks/table.py --rows 1000000 --layout commits --relabel-commits 20

Each table is synthetic (no video is decoded): one whole-video row per URI
``s3://bucket/videos/<9 digits>.mp4`` (every 4th number, so new videos fall between existing
ones), with realistic columns (5 labels from the Kinetics-400 names, scores, 16 frame indices
and timestamps, source_version, weights_sha256). It is written with ``write_deltalake``, sorted
by video_uri, in one of two layouts:

    compacted   what ``stam-label optimize`` leaves: files up to TARGET_FILE_BYTES (128 MB)
    commits     small files, as runs leave them before any optimize: written with
                target_file_size=1, delta-rs cuts a file per ~1000-row batch (980 files at 1M rows)

Then, each on a fresh copy of the table (``LabelTable.commit``, the production path):

    new         one commit of 2000 new videos (URIs between existing ones, spread over the table)
    mixed       one commit of 1000 relabelled videos spread over the table + 1000 new ones;
                CommitResult.rewritten_rows (rows copied into new files) against the table's rows
    relabel     a whole-table --relabel: every video in URI order, commits of 2000; the first
                --relabel-commits commits are run and the rest extrapolated (said so in the output)
    skipset     in a fresh process each: jobs.plan._small_plan (the driver's Arrow anti-join, listing
                capped at LOCAL_PLAN_MAX_ROWS) and jobs.plan._large_plan (done_dataset + Ray join +
                sort); time and the driver's peak RSS above its baseline after imports and ray.init
                (VmHWM after resetting it through /proc/self/clear_refs; Ray's worker processes
                excluded); --skipset-paths small-lowmem runs a PROTOTYPE of _small_plan that
                reads the table with ParquetFile.iter_batches (not production code)

moto: ``--s3`` starts jobs.tools.demo_s3.LocalS3 (a moto server in a child process) and puts the
table in s3://bench/...; moto keeps objects in its process memory and is slow, so 100k rows
is the size to use there.
"""
# The parts: table_rows.py (synthetic rows and tables; benchmarks/scale.py uses them too),
# table_experiments.py and table_skipset.py (the experiments), table_runner.py (fresh
# processes, table copies). This file: the command line; benchmarks/scale.py imports
# build_table and cpu_info from it.
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from table_rows import build_table, table_files
from table_runner import Copier, child, run_child
from table_skipset import write_listings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_info() -> str:
    model, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    marks = ", ".join(f"{k}={'yes' if k in flags else 'no'}" for k in ("avx2", "avx512f", "avx512_bf16"))
    return f"{model}, {os.cpu_count()} cores, {marks}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--layout", choices=("compacted", "commits"), default="compacted")
    ap.add_argument("--s3", action="store_true", help="on moto (jobs.tools.demo_s3.LocalS3)")
    ap.add_argument("--experiments", nargs="+", default=["new", "mixed", "relabel", "skipset"])
    ap.add_argument("--relabel-commits", type=int, default=10, help="commits of the whole-table relabel to run")
    ap.add_argument("--skipset-paths", nargs="+", choices=("small", "small-lowmem", "ray", "new10", "new100k"),
                    default=["small", "ray"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-kwargs", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    print(f"{cpu_info()}; {platform.python_version()}; layout {args.layout}; {'moto S3' if args.s3 else 'local disk'}")
    s3 = None
    if args.s3:
        from jobs.tools.demo_s3 import LocalS3

        s3 = LocalS3().start()
        s3.create_bucket("bench")
        from jobs.tools.demo_s3 import _ENV

        os.environ["BENCH_AWS_ENV"] = json.dumps({k: os.environ[k] for k in _ENV})
    from jobs.storage import delta_storage_options

    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
            for rows in args.rows:
                pristine = f"s3://bench/t{rows}" if s3 else f"{tmp}/t{rows}"
                opts = delta_storage_options(pristine)
                built = build_table(pristine, rows, args.layout, storage_options=opts)
                files, size = table_files(pristine, opts)
                print(f"\n{rows} rows: built in {built:.1f} s, {files} files, {size / 2**20:.1f} MB "
                      f"({size / rows:.0f} B/row)", flush=True)
                copier = Copier(s3, tmp)
                listing = write_listings(pristine, rows, tmp) if "skipset" in args.experiments else {}
                res = results[rows] = {"files": files, "mb": size / 2**20}
                for name in args.experiments:
                    variants = ([{"path": p, "listing": listing} for p in args.skipset_paths]
                                if name == "skipset" else [{}])
                    for kw in variants:
                        if name == "relabel":
                            kw = {"commits": args.relabel_commits}
                        target = pristine if name == "skipset" else copier.copy(pristine)
                        r = run_child(name, target, rows, s3 is not None, **kw)
                        if target != pristine:
                            copier.drop(target)
                        key = name + (f"-{kw['path']}" if "path" in kw else "")
                        res[key] = r
                        print(f"  {key}: {json.dumps(r)}", flush=True)
                copier.drop(pristine)
    finally:
        if s3 is not None:
            s3.stop()
    print("\nRESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
