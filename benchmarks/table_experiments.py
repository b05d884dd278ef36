"""The commit experiments of benchmarks/table.py: new videos, relabel + new, a whole-table relabel.

Each runs in a fresh process on a fresh copy of the table (table_runner.run_child), through
LabelTable.commit, the production path.
"""
from __future__ import annotations

import time

import numpy as np
from table_rows import COMMIT, STEP, synth_rows


def exp_new(table_uri: str, rows: int, **_) -> dict:
    from jobs.table import LabelTable

    rng = np.random.default_rng(1)
    new = np.sort(rng.choice(rows, COMMIT, replace=False)) * STEP + 1
    batch = synth_rows(new, run_id="bench-new", seed=7)
    table = LabelTable(table_uri)
    start = time.perf_counter()
    res = table.commit(batch, run_id="bench-new", seq=1)
    return {"commit_s": time.perf_counter() - start, "rewritten_rows": res.rewritten_rows, "rows": res.rows}


def exp_mixed(table_uri: str, rows: int, **_) -> dict:
    from jobs.table import LabelTable

    rng = np.random.default_rng(2)
    picked = rng.choice(rows, 2 * (COMMIT // 2), replace=False)
    relabelled, new = np.sort(picked[: COMMIT // 2]) * STEP, np.sort(picked[COMMIT // 2:]) * STEP + 1
    batch = synth_rows(np.sort(np.concatenate([relabelled, new])), run_id="bench-mixed", seed=8)
    table = LabelTable(table_uri)
    files_before = len(table.data_files())
    start = time.perf_counter()
    res = table.commit(batch, run_id="bench-mixed", seq=1)
    elapsed = time.perf_counter() - start
    delta = table.snapshot()
    ops = delta.history(1)[0].get("operationMetrics", {})
    return {"commit_s": elapsed, "rewritten_rows": res.rewritten_rows, "table_rows": rows,
            "files_before": files_before, "files_removed": ops.get("num_target_files_removed"),
            "files_added": ops.get("num_target_files_added")}


def exp_relabel(table_uri: str, rows: int, commits: int = 10, **_) -> dict:
    from jobs.table import LabelTable

    table = LabelTable(table_uri)
    total_commits = -(-rows // COMMIT)
    done = min(commits, total_commits)
    per_commit, times = [], []
    for seq in range(1, done + 1):
        lo = (seq - 1) * COMMIT
        batch = synth_rows(np.arange(lo, min(lo + COMMIT, rows), dtype=np.int64) * STEP, run_id="bench-relabel",
                           seed=100 + seq)
        start = time.perf_counter()
        res = table.commit(batch, run_id="bench-relabel", seq=seq)
        times.append(time.perf_counter() - start)
        per_commit.append(res.rewritten_rows)
    files = len(table.data_files())
    measured_rewrite = sum(per_commit)
    # Extrapolate: later commits of a sorted table behave like the measured steady state
    # (the median of the measured commits after the first).
    steady = float(np.median(per_commit[1:] if len(per_commit) > 1 else per_commit))
    steady_t = float(np.median(times[1:] if len(times) > 1 else times))
    est_rewrite = measured_rewrite + steady * (total_commits - done)
    return {"commits_total": total_commits, "commits_measured": done, "rewritten_per_commit": per_commit,
            "commit_s": [round(t, 3) for t in times], "measured_rewritten": measured_rewrite,
            "estimated_total_rewritten": est_rewrite, "estimated_rewrites_of_table": est_rewrite / rows,
            "estimated_total_s": sum(times) + steady_t * (total_commits - done),
            "extrapolated": done < total_commits, "files_after": files}



def exp_scattered(table_uri: str, rows: int, **_) -> dict:
    """Two commits of 1000 relabels each, spread over the table (sources that changed)."""
    from jobs.table import LabelTable

    rng = np.random.default_rng(3)
    picked = rng.choice(rows, 2000, replace=False)
    table = LabelTable(table_uri)
    out = {"files_before": len(table.data_files())}
    for seq, part in enumerate((picked[:1000], picked[1000:]), 1):
        batch = synth_rows(np.sort(part) * STEP, run_id="bench-scattered", seed=20 + seq)
        start = time.perf_counter()
        res = table.commit(batch, run_id="bench-scattered", seq=seq)
        out[f"commit{seq}_s"] = round(time.perf_counter() - start, 3)
        out[f"commit{seq}_rewritten_rows"] = res.rewritten_rows
        out[f"files_after_commit{seq}"] = len(table.data_files())
    return out


def exp_open(table_uri: str, rows: int, **_) -> dict:
    """Opening the table: a DeltaTable, its version and file list (what every run does first)."""
    from deltalake import DeltaTable

    start = time.perf_counter()
    table = DeltaTable(table_uri)
    files = len(table.file_uris())
    return {"open_s": round(time.perf_counter() - start, 3), "version": table.version(), "files": files}


def exp_mix(table_uri: str, rows: int, **_) -> dict:
    """One commit of 1000 relabels of consecutive videos (a source folder re-encoded) + 1000 new ones spread."""
    from jobs.table import LabelTable

    rng = np.random.default_rng(4)
    start = int(rng.integers(0, rows - 1000))
    relabelled = np.arange(start, start + 1000) * STEP
    new = np.sort(rng.choice(rows, 1000, replace=False)) * STEP + 1
    batch = synth_rows(np.sort(np.concatenate([relabelled, new])), run_id="bench-mix", seed=9)
    table = LabelTable(table_uri)
    begin = time.perf_counter()
    res = table.commit(batch, run_id="bench-mix", seq=1)
    return {"commit_s": time.perf_counter() - begin, "rewritten_rows": res.rewritten_rows, "rows": res.rows}
