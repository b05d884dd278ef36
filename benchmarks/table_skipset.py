"""The skip-set experiment of benchmarks/table.py: the driver's time and peak memory for the plan.

In a fresh process each (table_runner.run_child): jobs.plan._small_plan (Arrow anti-join on the
driver), jobs.plan._large_plan (Ray join + sort), or the PROTOTYPE small_plan_lowmem.
"""
from __future__ import annotations

import time

import pyarrow as pa
from table_rows import SHA


def _status_mb(field: str) -> float:
    """A figure of /proc/self/status (VmRSS, VmHWM, ...) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def exp_skipset(table_uri: str, rows: int, path: str = "small", listing: dict | None = None, **_) -> dict:
    """The skip set (anti-join of a listing with the done rows) on the driver or on Ray."""
    import ray

    from jobs import plan
    from jobs.plan import done_filter
    from jobs.table import LabelTable

    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    from jobs.logs import quiet_ray

    quiet_ray()
    table = LabelTable(table_uri)
    listed_rows = {"ray": rows, "new10": 10, "new100k": 100_000}.get(path, min(rows, plan.LOCAL_PLAN_MAX_ROWS))
    # The listing was written by the parent (the driver never holds it before the measurement).
    listed_ds = ray.data.read_parquet(listing[path]).materialize()
    assert listed_ds.count() == listed_rows
    # Warm up Ray Data's executor on something tiny, so its one-off costs are in the baseline.
    ray.data.range(10).materialize()
    peak_before = _status_mb("VmHWM")
    _reset_peak()
    base = _status_mb("VmRSS")
    start = time.perf_counter()
    if path in ("small", "new10", "new100k"):
        todo = plan._small_plan(listed_ds, table, done_filter(SHA, "video"))
        to_label = todo.num_rows
    elif path == "small-lowmem":
        todo = small_plan_lowmem(listed_ds, table, done_filter(SHA, "video"))
        to_label = todo.num_rows
    else:
        todo = plan._large_plan(listed_ds, table, SHA, "video", relabel=False)
        to_label = todo.count()
    elapsed = time.perf_counter() - start
    peak = _status_mb("VmHWM")
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

    from jobs.columns import SKIP_KEY as DONE_COLUMNS
    from jobs.plan import PLAN_COLUMNS, PLAN_TYPES
    from jobs.schema import plain

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
    from jobs.schema import plain
    from jobs.table import LabelTable

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
    # New videos only (numbers between existing ones, spread over the table): a nightly run's listing.
    import numpy as np
    from table_rows import STEP, uri

    rng = np.random.default_rng(5)
    for path, n in (("new10", 10), ("new100k", 100_000)):
        numbers = np.sort(rng.choice(rows, n, replace=False)) * STEP + 2
        new = pa.table({"video_uri": pa.array([uri(int(i)) for i in numbers], pa.string()),
                        "source_size": pa.array(np.full(n, 1 << 20), pa.int64()),
                        "source_version": pa.array([f"new:{i}" for i in numbers], pa.string()),
                        "error_kind": pa.nulls(n, pa.string()), "error": pa.nulls(n, pa.string())})
        out[path] = f"{folder}/listing-{rows}-{path}.parquet"
        pq.write_table(new, out[path], row_group_size=50_000)
    return out

