"""Planning: what this run labels, computed on Ray, never held in the driver's memory.

    list_source(INPUT)                    Ray tasks: listing / manifest / S3 Inventory, keys normalised
      .sort(video_uri)                    URI order: --limit takes the first N still to label,
                                          and commits come out clustered by video_uri
      drop what is done                   per sorted block, the current rows of *its* videos only
                                          (jobs.lookup: file and row-group URI ranges), skipped when
                                          same source_version, weights and mode, and ok or a final error
      [.limit(N)]
      .write_parquet(_runs/<run>.plan/)   the plan: the total for progress, and what the end of
                                          the run reconciles against (without listing again); a
                                          plan of up to LOCAL_PLAN_MAX_ROWS is made, written and
                                          handed to Ray (from_arrow) by the driver

The skip test reads only the files and row groups whose URI range can hold a listed video, so
its cost follows the listing, not the table: 10 new videos against 10M labelled ones read a
few row groups.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.columns import KEY, SKIP_KEY
from jobs.listing.rows import LISTING_SCHEMA
from jobs.lookup import rows_of
from jobs.schema import OPTION_ERROR_KINDS, RETRYABLE_ERROR_KINDS, plain
from jobs.segments import video_row_index
from jobs.storage import put_bytes
from jobs.table import LabelTable

log = logging.getLogger("stam_label")

# A plan row is a listing row (jobs/listing/rows.py defines its columns once), all nullable here.
PLAN_TYPES = {f.name: f.type for f in LISTING_SCHEMA}
PLAN_COLUMNS = tuple(PLAN_TYPES)
# Plans up to this many listed videos are sorted and looked up on the driver (about 60 MB of
# Arrow at most); larger ones with Ray's distributed sort and a look-up per block.
LOCAL_PLAN_MAX_ROWS = 200_000
# A folder or prefix is listed on the driver (no Ray) unless its listing passes that many rows or
# this many seconds; then Ray lists it again, spread over the cluster.
LIST_HERE_MAX_S = 5.0
MAX_BLOCKS = 100_000  # Ray's per-block bookkeeping: beyond this, blocks grow instead
SMALL_PLAN_FILE = "plan.parquet"  # a plan made on the driver, in the plan's folder

# What done_filter reads (after reading: files written by delta-rs may hold string_view columns,
# which a scan-time filter against a plain string literal does not match).
DONE_FILTER_COLUMNS = (*KEY, "source_version", "weights_sha256", "status", "error_kind")


def done_filter(weights_sha256: str | None, mode: str) -> pc.Expression:
    """Current video-level rows that a run with these weights and mode need not redo.

    Same weights and mode, and either ok or an error that is final for that source version.
    The caller joins on (video_uri, source_version), so a changed file is labelled again.
    Errors that depend on the run's options (too_large, not_allowed) are always tried again:
    they cost a header read, and the options may have changed.
    """
    level = video_row_index(mode)
    again = sorted(RETRYABLE_ERROR_KINDS | OPTION_ERROR_KINDS)
    final = (pc.field("status") == "ok") | ~pc.field("error_kind").isin(again)
    return ((pc.field("weights_sha256") == (weights_sha256 or "")) & (pc.field("mode") == mode)
            & (pc.field("segment_index") == level) & final & pc.field("source_version").is_valid())


def done_keys(table: LabelTable, weights_sha256: str | None, mode: str) -> set[tuple[str, str]]:
    """(video_uri, source_version) pairs a run with these weights can skip (small tables, tests)."""
    current = table.read_current(list(DONE_FILTER_COLUMNS))
    if current is None:
        return set()
    current = current.filter(done_filter(weights_sha256, mode))
    return set(zip(current["video_uri"].to_pylist(), current["source_version"].to_pylist()))


@dataclass
class Plan:
    listed: int
    skipped: int
    total: int  # videos to label
    path: str | None  # the persisted plan (None for a dry run or an empty plan)
    table_version: int | None = None  # the label table's version the plan was made against
    first: list[str] = field(default_factory=list)  # a dry run's first video_uris to label (up to 10)


def listing(input_uri: str, *, extensions: tuple[str, ...], allow_local_paths: bool):
    from jobs.listing import list_source

    return list_source(input_uri, extensions=extensions,
                       allow_local_paths=allow_local_paths).select_columns(list(PLAN_COLUMNS))


def build(table: LabelTable, input_uri: str, *, extensions: tuple[str, ...], allow_local_paths: bool,
          weights_sha256: str | None, mode: str, relabel: bool, limit: int | None, videos_per_task: int,
          path: str | None, ray_ready: Callable[[], None] = lambda: None) -> tuple[Plan, object]:
    """The run's plan and a dataset of its work items (None when there is none), sorted by video_uri.

    The plan is persisted at ``path`` (jobs.runs.plan_path) and its dataset read from there;
    ``path=None`` (a dry run) persists nothing and makes no dataset. ``ray_ready`` is called
    before the first use of Ray: a small folder or prefix is listed here, and a plan with
    nothing to label (a rerun) or a small dry run never needs Ray.
    """
    from jobs.listing import list_here

    snapshot = table.snapshot()
    version = None if snapshot is None else snapshot.version()
    done = None if relabel else done_filter(weights_sha256, mode)
    here = list_here(input_uri, extensions=extensions, max_rows=LOCAL_PLAN_MAX_ROWS, max_seconds=LIST_HERE_MAX_S)
    if here is not None:
        listed = here.num_rows
        todo = _local_plan([here], table, done)
    else:
        ray_ready()
        listed_ds = listing(input_uri, extensions=extensions, allow_local_paths=allow_local_paths).materialize()  # in Ray's object store, not on the driver
        listed = listed_ds.count()
        todo = _small_plan(listed_ds, table, done) if listed <= LOCAL_PLAN_MAX_ROWS else None
    if todo is not None:  # an Arrow table on the driver
        to_label = todo.num_rows
        todo = todo.slice(0, limit) if limit is not None else todo
        total, first = todo.num_rows, todo["video_uri"].slice(0, 10).to_pylist()
    else:
        todo_ds = _large_plan(listed_ds, table, weights_sha256, mode, relabel)
        to_label = todo_ds.count()
        if limit is not None:
            todo_ds = todo_ds.limit(limit)  # the first N still to label; the rest wait
        total = min(to_label, limit) if limit is not None else to_label
        first = [r["video_uri"] for r in todo_ds.take(10)] if path is None else []
    plan = Plan(listed, listed - to_label, total, None, version, first)
    if path is None or not total:
        return plan, None
    if todo is not None:  # a small plan, on the driver already: written here and handed to Ray as it is
        put_bytes(table.fs, f"{path}/{SMALL_PLAN_FILE}", _parquet_bytes(todo))
        ray_ready()
        import ray

        ds = ray.data.from_arrow(todo)  # no write task, no read tasks, no footer-reading actor
    else:
        todo_ds.write_parquet(path, filesystem=table.fs)
        ds = read(table, path)
    plan.path = path
    # The plan is one block: one decode task, one commit. It is split into blocks of a decode
    # task's share by Ray's streaming repartition, a map step: a repartition into N blocks is an
    # all-to-all step, and Ray Data turns its no-progress guard off for a pipeline holding one
    # (work no node can take would then wait forever instead of being recorded lost).
    # At least videos_per_task rows a block (Ray would bundle smaller ones into one task); in
    # window mode a video per block, as each becomes many windows.
    per_block = videos_per_task if mode == "video" else 1
    rows_per_block = max(per_block, -(-total // MAX_BLOCKS))
    return plan, ds.repartition(target_num_rows_per_block=rows_per_block)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _small_plan(listed_ds, table: LabelTable, done: pc.Expression | None) -> pa.Table:
    """Up to LOCAL_PLAN_MAX_ROWS listed videos, listed on Ray: sorted and looked up on the driver.

    Ray's shuffles start aggregator actors (about 14 s each on 2 cores) whatever the size; a
    small plan is cheaper here, and its memory is bounded by the threshold.
    """
    import ray

    refs = listed_ds.to_arrow_refs()
    return _local_plan(ray.get(refs) if refs else [], table, done)


def _local_plan(blocks: list[pa.Table], table: LabelTable, done: pc.Expression | None) -> pa.Table:
    """Listed blocks, sorted by video_uri, without what is done (the skip test, on the driver)."""
    parts = [t for t in map(_plan_rows, blocks) if t.num_rows]
    if not parts:
        return _plan_rows(None)
    listed = pa.concat_tables(parts).sort_by("video_uri")
    return drop_done(listed, files=table.file_ranges() if done is not None else [], fs=table.fs, done=done)


def _plan_rows(batch: pa.Table | None) -> pa.Table:
    """A listing block in the plan's own schema (columns in order, plain types), whatever its source."""
    if batch is None or not batch.num_rows:  # an empty block may carry no columns at all
        return pa.table({c: pa.array([], t) for c, t in PLAN_TYPES.items()})
    return plain(batch).select(list(PLAN_COLUMNS)).cast(pa.schema(PLAN_TYPES.items()))


def drop_done(listed: pa.Table, *, files: list, fs, done: pc.Expression | None) -> pa.Table:
    """``listed`` (sorted by video_uri) without the videos a run may skip: the skip test.

    Reads the current rows of ``listed``'s videos only (jobs.lookup), so its cost follows the
    listing, not the table.
    """
    listed = _plan_rows(listed)
    if done is None or not files or not listed.num_rows:
        return listed
    current = rows_of(fs, files, listed["video_uri"], list(DONE_FILTER_COLUMNS))
    if current is None:
        return listed
    keys = current.filter(done).select(list(SKIP_KEY))
    if not keys.num_rows:
        return listed
    # Arrow's join does not keep order: re-sort (the block is small, and sorted already).
    return listed.join(keys, keys=list(SKIP_KEY), join_type="left anti").sort_by("video_uri")


def _large_plan(listed_ds, table: LabelTable, weights_sha256: str | None, mode: str, relabel: bool):
    """Ray's distributed sort, then the skip test per sorted block: driver memory stays flat.

    Each block is a narrow URI range, so it reads only the files and row groups of that range;
    the file ranges (a few bytes per file) travel to the tasks once, through the object store.
    """
    todo = listed_ds.map_batches(_plan_rows, batch_format="pyarrow", batch_size=None).sort("video_uri")
    if not relabel:
        files = table.file_ranges()
        if files:
            todo = todo.map_batches(drop_done, batch_format="pyarrow", batch_size=None,
                                    fn_kwargs={"files": files, "fs": table.fs,
                                               "done": done_filter(weights_sha256, mode)})
    return todo.materialize()


def read(table: LabelTable, path: str):
    import ray

    return ray.data.read_parquet(path, filesystem=table.fs)

