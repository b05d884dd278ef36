"""Opening the label table after many commits: the Delta log with and without checkpoints.

    .venv/bin/python benchmarks/table_log.py --commits 10000 --uncheckpointed 2000

Writes a table of --commits small commits (one 2-row append each, as a long series of runs
leaves it before any optimize) with checkpoints every 100 versions (what LabelTable creates),
and one of --uncheckpointed commits with checkpoints off (what a table made by other tools may
have; each commit there replays the whole log, so writing it grows with the square), then times
opening it in a fresh process (DeltaTable(uri), its version and file list), three times each.
After an optimize (compaction, checkpoint, log cleanup) the open is timed again.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPEN = """
import time, sys
t = time.perf_counter()
from deltalake import DeltaTable
t0 = time.perf_counter()
d = DeltaTable(sys.argv[1])
v = d.version(); n = len(d.file_uris())
print(time.perf_counter() - t0, v, n)
"""


def make(path: str, commits: int, interval: int) -> float:
    import pyarrow as pa
    from deltalake import write_deltalake

    start = time.perf_counter()
    config = {"delta.checkpointInterval": str(interval)}
    for i in range(commits):
        rows = pa.table({"video_uri": [f"v/{i:09d}a.mp4", f"v/{i:09d}b.mp4"], "segment_index": pa.array([0, 0], pa.int32())})
        write_deltalake(path, rows, mode="append", configuration=config if i == 0 else None)
    return time.perf_counter() - start


def open_s(path: str) -> list[float]:
    out = []
    for _ in range(3):
        line = subprocess.run([sys.executable, "-c", OPEN, path], capture_output=True, text=True, check=True).stdout
        out.append(round(float(line.split()[0]), 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--uncheckpointed", type=int, default=2_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="table-log-"))
    result = {"commits": args.commits, "uncheckpointed_commits": args.uncheckpointed}
    try:
        for name, interval, commits in (("checkpoint_every_100", 100, args.commits),
                                        ("no_checkpoints", 10**9, args.uncheckpointed)):
            path = str(root / name)
            result[f"{name}_write_s"] = round(make(path, commits, interval), 1)
            result[f"{name}_log_files"] = len(os.listdir(Path(path) / "_delta_log"))
            result[f"{name}_open_s"] = open_s(path)
        from jobs.tools.maintenance import optimize

        path = str(root / "no_checkpoints")
        start = time.perf_counter()
        optimize(path)
        result["optimize_s"] = round(time.perf_counter() - start, 1)
        result["after_optimize_log_files"] = len(os.listdir(Path(path) / "_delta_log"))
        result["after_optimize_open_s"] = open_s(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
