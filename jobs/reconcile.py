"""Reconciling: the step after labelling. Planned videos that produced no row become "lost" rows.

A video Ray gave up on (its task failed past its retries, its node left) returns nothing. The
run's plan (persisted by jobs/plan.py) says what it set out to label; the files the table
gained since the plan say what came back. The difference is committed as error rows of kind
``lost``, so nothing disappears silently and the next run labels those videos again.

    lost_rows(table, plan, ...)   the "lost" rows, in batches (none when all came back: a cheap test);
                                  a plan of up to LOCAL_PLAN_MAX_ROWS is joined on the driver, a
                                  larger one by Ray
    check_lost(lost, plan, ...)   says how many; JobFailed when every planned video was lost
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from jobs.errors import JobFailed
from jobs.plan import LOCAL_PLAN_MAX_ROWS, Plan, read
from jobs.schema import plain
from jobs.segments import video_row_index
from jobs.table import LabelTable

log = logging.getLogger("stam_label")

JOIN_PARTITIONS_PER_CPU = 2  # the anti-join of the plan with what came back


def lost_rows(table: LabelTable, plan: Plan, *, schema: pa.Schema, run_id: str, mode: str,
              batch_rows: int) -> Iterator[pa.Table]:
    """The "lost" error rows (in ``schema``) of planned videos that never came back, at most
    ``batch_rows`` a batch."""
    if written_since(table, plan, run_id, mode) >= plan.total:
        return  # every planned video has a row from this run: nothing lost, no join needed
    if plan.total <= LOCAL_PLAN_MAX_ROWS:  # as small as the plans made on the driver: joined here
        batches = lost_here(table, plan, mode).to_batches(max_chunksize=batch_rows)
    else:
        batches = lost(table, plan, mode).iter_batches(batch_size=batch_rows, batch_format="pyarrow")
    for batch in batches:
        yield error_rows(batch, schema, run_id=run_id, mode=mode)


def check_lost(lost: int, plan: Plan, run_id: str) -> None:
    """Warn about lost videos; raise JobFailed when every planned video was lost (the pipeline
    itself is broken, not the videos)."""
    if lost:
        log.warning("%d videos produced no row (their Ray tasks failed past retries): recorded as 'lost'", lost)
    if plan.total and lost == plan.total:
        raise JobFailed(f"every Ray task failed; no video was labelled (run {run_id}, see the log above)")


def error_rows(lost: pa.Table | pa.RecordBatch, schema: pa.Schema, *, run_id: str, mode: str) -> pa.Table:
    """The error rows of planned videos (plan rows) that never came back."""
    now = dt.datetime.now(dt.timezone.utc)
    return pa.Table.from_pylist([{
        "video_uri": it["video_uri"], "mode": mode, "segment_index": video_row_index(mode), "status": "error",
        "error": f"{it['video_uri']}: no result: its Ray task failed past its retries (the run's log says "
                 "why); the next run labels it again",
        "error_kind": "lost", "source_size": it["source_size"], "source_version": it["source_version"],
        "run_id": run_id, "labelled_at": now,
    } for it in lost.to_pylist()], schema=schema)

def lost(table: LabelTable, plan: Plan, mode: str):
    """Plan rows whose video has no row written since the plan was made (Ray lost their tasks).

    "Written since" is by commit order, not by timestamps: the video-level rows in the data
    files the table gained after ``plan.table_version``. A video another run labelled
    meanwhile counts as done; what this run never committed does not.
    """
    import ray

    planned = read(table, plan.path)
    files = new_files(table, plan.table_version)
    if not files:
        return planned
    level = video_row_index(mode)

    def written(batch: pa.Table) -> pa.Table:
        return plain(batch).filter(pc.field("segment_index") == level).select(["video_uri"])

    done = ray.data.read_parquet(files, filesystem=table.fs).select_columns(["video_uri", "segment_index"])
    done = done.map_batches(written, batch_format="pyarrow", batch_size=None)
    return planned.join(done, join_type="left_anti", num_partitions=_join_partitions(), on=("video_uri",))


def lost_here(table: LabelTable, plan: Plan, mode: str) -> pa.Table:
    """``lost`` for a plan of up to LOCAL_PLAN_MAX_ROWS videos, on the driver with pyarrow: no
    Ray shuffle to start (on a cluster that has just lost a node, it took ~20 s)."""
    import pyarrow.dataset as pads

    planned = plain(pads.dataset(plan.path, format="parquet", filesystem=table.fs).to_table())
    files = new_files(table, plan.table_version)
    if not files:
        return planned
    written = plain(pads.dataset(files, format="parquet", filesystem=table.fs).to_table(
        columns=["video_uri", "segment_index"]))
    done = written.filter(pc.field("segment_index") == video_row_index(mode)).select(["video_uri"])
    return planned.join(done, keys="video_uri", join_type="left anti")


def new_files(table: LabelTable, since_version: int | None) -> list[str]:
    """Data files of the current version that were not in ``since_version``."""
    now = set(table.data_files())
    if since_version is None:
        return sorted(now)
    return sorted(now - set(table.data_files(version=since_version)))


def written_since(table: LabelTable, plan: Plan, run_id: str, mode: str) -> int:
    """This run's video-level rows among the files added since the plan (a cheap completeness test)."""
    import pyarrow.dataset as pads

    files = new_files(table, plan.table_version)
    if not files:
        return 0
    level = video_row_index(mode)
    rows = plain(pads.dataset(files, format="parquet", filesystem=table.fs).to_table(
        columns=["run_id", "segment_index"]))
    return rows.filter((pc.field("run_id") == run_id) & (pc.field("segment_index") == level)).num_rows


def _join_partitions() -> int:
    import ray

    return max(2, int(ray.cluster_resources().get("CPU", 1) * JOIN_PARTITIONS_PER_CPU))
