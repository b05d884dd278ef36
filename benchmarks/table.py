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
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHA = "ab" * 32  # the weights_sha256 of every synthetic row
STEP = 4  # existing videos are numbers 0, 4, 8, ...: new ones fit between them
COMMIT = 2000
COMPACT_BYTES = 128 << 20  # jobs.tools.maintenance.TARGET_FILE_BYTES


def uri(n) -> str:
    return f"s3://bucket/videos/{n:09d}.mp4"


def synth_rows(numbers: np.ndarray, *, run_id: str = "20260101T000000Z-000000", sha: str = SHA,
               versions: list | None = None, seed: int = 0) -> pa.Table:
    """Whole-video 'ok' rows (output_schema, flat columns filled) for the given video numbers."""
    from jobs.schema import output_schema, with_flat_columns
    from stam_core import KINETICS400_CLASSES

    n = len(numbers)
    rng = np.random.default_rng(seed)
    schema = output_schema()

    def lists(values: np.ndarray, per: int, type_):
        offsets = pa.array(np.arange(0, n * per + 1, per, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type_))

    classes = np.array(KINETICS400_CLASSES, dtype=object)
    class_ids = rng.integers(0, len(classes), (n, 5), dtype=np.int32)
    scores = np.sort(rng.dirichlet(np.ones(6), n)[:, :5].astype(np.float32), axis=1)[:, ::-1]
    duration = rng.uniform(5, 600, n)
    frames = np.sort(rng.integers(0, 9000, (n, 16), dtype=np.int32), axis=1)
    sizes = rng.integers(1 << 20, 1 << 30, n)
    if versions is None:
        versions = [f"{s}:{1_700_000_000_000_000_000 + int(i)}" for s, i in zip(sizes, numbers)]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cols = {
        "video_uri": pa.array([uri(int(i)) for i in numbers], pa.string()),
        "mode": pa.array(["video"] * n), "segment_index": pa.array(np.zeros(n, np.int32)),
        "segment_start_s": pa.array(np.zeros(n)), "segment_end_s": pa.array(duration),
        "status": pa.array(["ok"] * n), "error": pa.nulls(n, pa.string()), "error_kind": pa.nulls(n, pa.string()),
        "labels": lists(classes[class_ids], 5, pa.string()), "scores": lists(scores, 5, pa.float32()),
        "class_ids": lists(class_ids, 5, pa.int32()),
        "duration_s": pa.array(duration), "fps": pa.array(np.full(n, 25.0)),
        "width": pa.array(np.full(n, 1280, np.int32)), "height": pa.array(np.full(n, 720, np.int32)),
        "codec": pa.array(["h264"] * n), "frame_indices": lists(frames, 16, pa.int32()),
        "frame_timestamps": lists(frames / 25.0, 16, pa.float64()), "decoder": pa.array(["pyav"] * n),
        "warnings": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())),
        "source_size": pa.array(sizes), "source_version": pa.array(versions, pa.string()),
        "model": pa.array(["stam_16"] * n), "weights_sha256": pa.array([sha] * n),
        "precision": pa.array(["fp32"] * n), "run_id": pa.array([run_id] * n),
        "labelled_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
    }
    cols = {f.name: (cols[f.name] if f.name in cols else pa.nulls(n, f.type)).cast(f.type) for f in schema}
    return with_flat_columns(pa.table(cols, schema=schema))


def build_table(table_uri: str, rows: int, layout: str, storage_options=None, chunk: int = 200_000,
                sha: str = SHA, versions=None) -> float:
    """A sorted table of `rows` videos (numbers 0, STEP, ...) in big appends; returns seconds."""
    from deltalake import write_deltalake

    start = time.perf_counter()
    numbers = np.arange(rows, dtype=np.int64) * STEP
    if layout == "compacted":  # one streaming write: files up to 128 MB, as optimize leaves them
        def batches():
            for lo in range(0, rows, chunk):
                part = synth_rows(numbers[lo:lo + chunk], sha=sha, seed=lo,
                                  versions=None if versions is None else versions[lo:lo + chunk])
                yield from part.to_batches()

        schema = synth_rows(numbers[:1], sha=sha).schema
        write_deltalake(table_uri, pa.RecordBatchReader.from_batches(schema, batches()), mode="append",
                        storage_options=storage_options, target_file_size=COMPACT_BYTES)
    else:  # small files (delta-rs cuts one per ~1000-row batch), one transaction per 100k rows
        per_write = COMMIT * 50
        for lo in range(0, rows, per_write):
            part = synth_rows(numbers[lo:lo + per_write], sha=sha, seed=lo,
                              versions=None if versions is None else versions[lo:lo + per_write])
            write_deltalake(table_uri, [b for s in range(0, part.num_rows, COMMIT)
                                        for b in part.slice(s, COMMIT).combine_chunks().to_batches()],
                            mode="append", storage_options=storage_options, target_file_size=1)
    return time.perf_counter() - start


def table_files(table_uri: str, storage_options=None) -> tuple[int, int]:
    from deltalake import DeltaTable

    t = DeltaTable(table_uri, storage_options=storage_options)
    actions = t.get_add_actions(flatten=True)
    sizes = pa.table(actions)["size_bytes"] if hasattr(actions, "__arrow_c_stream__") else actions.column("size_bytes")
    return len(sizes), int(pa.compute.sum(sizes).as_py())


# ---- the experiments (each in a fresh process, on a fresh copy of the table) ---------------------
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


def _rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM) since the last _reset_peak()."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def exp_skipset(table_uri: str, rows: int, path: str = "small", listing: dict | None = None, **_) -> dict:
    """The skip set (anti-join of a listing with the done rows) on the driver or on Ray."""
    import ray

    from jobs import plan
    from jobs.table import LabelTable, done_filter

    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    from jobs.logs import quiet_ray

    quiet_ray()
    table = LabelTable(table_uri)
    listed_rows = rows if path == "ray" else min(rows, plan.LOCAL_PLAN_MAX_ROWS)
    # The listing was written by the parent (the driver never holds it before the measurement).
    listed_ds = ray.data.read_parquet(listing[path]).materialize()
    assert listed_ds.count() == listed_rows
    # Warm up Ray Data's executor on something tiny, so its one-off costs are in the baseline.
    ray.data.range(10).materialize()
    peak_before = _peak_mb()
    _reset_peak()
    base = _rss_now_mb()
    start = time.perf_counter()
    if path == "small":
        todo = plan._small_plan(listed_ds, table, done_filter(SHA, "video"))
        to_label = todo.num_rows
    elif path == "small-lowmem":
        todo = small_plan_lowmem(listed_ds, table, done_filter(SHA, "video"))
        to_label = todo.num_rows
    else:
        todo = plan._large_plan(listed_ds, table, SHA, "video", relabel=False)
        to_label = todo.count()
    elapsed = time.perf_counter() - start
    peak = _peak_mb()
    ray.shutdown()
    return {"path": path, "listed": listed_rows, "to_label": to_label, "seconds": elapsed,
            "baseline_rss_mb": base, "peak_rss_mb": peak, "peak_above_baseline_mb": peak - base,
            "peak_before_mb": peak_before}


def small_plan_lowmem(listed_ds, table, done):
    """PROTOTYPE (not production): jobs.plan._small_plan with the table read in bounded memory.

    The production loop asks for batches of LOCAL_PLAN_MAX_ROWS, but the scanner decodes a
    whole row group at a time (and reads ahead); delta-rs writes a file of up to 128 MB as one
    row group (~1M rows here), so the driver holds the key columns of a whole file at once.
    Here: pyarrow.parquet.ParquetFile.iter_batches, one file at a time, no pre-buffering,
    batches of 50k rows. (The files' columns are the same here; production would also
    align schemas across files, as table.dataset() does.)
    """
    import ray

    from jobs.plan import DONE_COLUMNS, PLAN_COLUMNS, PLAN_TYPES
    from jobs.table import plain

    refs = listed_ds.to_arrow_refs()
    listed = pa.concat_tables([plain(t) for t in ray.get(refs)])
    listed = listed.select(list(PLAN_COLUMNS)).cast(pa.schema(PLAN_TYPES.items()))
    import pyarrow.parquet as pq

    columns = sorted(set(DONE_COLUMNS) | {"weights_sha256", "mode", "segment_index", "status", "error_kind"})

    def batches():
        for path in table.data_files():
            with table.fs.open_input_file(path) as f:
                yield from pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=50_000, columns=columns,
                                                                            use_threads=False)

    keys = []
    for batch in batches():
        part = plain(pa.Table.from_batches([batch])).filter(done).select(list(DONE_COLUMNS))
        if part.num_rows:
            keys.append(part)
            if sum(k.num_rows for k in keys) >= 200_000:
                listed = listed.join(pa.concat_tables(keys), keys=list(DONE_COLUMNS), join_type="left anti")
                keys = []
    if keys:
        listed = listed.join(pa.concat_tables(keys), keys=list(DONE_COLUMNS), join_type="left anti")
    return listed.sort_by("video_uri").select(list(PLAN_COLUMNS))


def write_listings(table_uri: str, rows: int, folder: str) -> dict:
    """Listing files for the skip-set runs: the table's videos, 90% with their current version."""
    import pyarrow.parquet as pq

    from jobs import plan
    from jobs.table import LabelTable, plain

    current = plain(LabelTable(table_uri).read_current(["video_uri", "source_size", "source_version"]))
    current = current.sort_by("video_uri")
    versions = current["source_version"].to_pylist()
    versions = [("changed" if i % 10 == 0 else v) for i, v in enumerate(versions)]
    listing = pa.table({"video_uri": current["video_uri"], "source_size": current["source_size"],
                        "source_version": pa.array(versions, pa.string()),
                        "error_kind": pa.nulls(rows, pa.string()), "error": pa.nulls(rows, pa.string())})
    out = {}
    for path, n in (("small", min(rows, plan.LOCAL_PLAN_MAX_ROWS)), ("ray", rows)):
        if path == "small":
            out["small-lowmem"] = f"{folder}/listing-{rows}-small.parquet"
        out[path] = f"{folder}/listing-{rows}-{path}.parquet"
        pq.write_table(listing.slice(0, n), out[path], row_group_size=50_000)
    return out


EXPERIMENTS = {"new": exp_new, "mixed": exp_mixed, "relabel": exp_relabel, "skipset": exp_skipset}


def child(args) -> None:
    """One experiment, in this (fresh) process; prints its result as the last JSON line."""
    kwargs = json.loads(args.child_kwargs)
    if args.s3:
        os.environ.update(json.loads(os.environ["BENCH_AWS_ENV"]))
    result = EXPERIMENTS[args.child](args.table, args.rows[0], **kwargs)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(name: str, table_uri: str, rows: int, s3: bool, timeout: float = 900, attempts: int = 2,
              **kwargs) -> dict:
    """The experiment in a fresh process; one retry (Ray Data 2.60 can fail the first read_parquet
    of several files in a process: see the note in docs/benchmarks.md); failures are counted."""
    cmd = [sys.executable, __file__, "--child", name, "--table", table_uri, "--rows", str(rows),
           "--child-kwargs", json.dumps(kwargs)] + (["--s3"] if s3 else [])
    failures = []
    for _ in range(attempts):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not out.returncode and lines:
            result = json.loads(lines[-1][len("RESULT "):])
            if failures:
                result["failed_tries"] = failures
            return result
        log = Path(tempfile.gettempdir()) / f"bench-table-{name}-{os.getpid()}-{len(failures)}.stderr"
        log.write_text(out.stderr)
        last = [line for line in out.stderr.splitlines() if line.strip() and not set(line.strip()) <= set("^~")]
        failures.append(f"{last[-1][:200] if last else out.returncode} (stderr: {log})")
    raise RuntimeError(f"{name} failed {attempts} times: {failures}")


class Copier:
    """A fresh copy of the pristine table for each experiment (local folder or S3 prefix)."""

    def __init__(self, s3, root: str):
        self.s3, self.root, self.n = s3, root, 0

    def copy(self, src: str) -> str:
        self.n += 1
        if self.s3 is None:
            dst = f"{self.root}/copy{self.n}"
            shutil.copytree(src, dst)
            return dst
        client = self.s3.client()
        bucket, prefix = src[len("s3://"):].split("/", 1)
        new_prefix = f"copy{self.n}"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                client.copy_object(Bucket=bucket, Key=new_prefix + obj["Key"][len(prefix):],
                                   CopySource={"Bucket": bucket, "Key": obj["Key"]})
        return f"s3://{bucket}/{new_prefix}"

    def drop(self, uri: str) -> None:
        if self.s3 is None:
            shutil.rmtree(uri, ignore_errors=True)
            return
        client = self.s3.client()
        bucket, prefix = uri[len("s3://"):].split("/", 1)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


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
    ap.add_argument("--skipset-paths", nargs="+", choices=("small", "small-lowmem", "ray"),
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
    from jobs.table import delta_storage_options

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
