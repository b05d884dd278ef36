"""Table maintenance: migrate (first layout -> Delta) and optimize (compact, cluster, vacuum); `stam-label migrate/optimize`."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from jobs.errors import JobError
from jobs.runs import new_run_id, write_run_record
from jobs.schema import output_schema, with_flat_columns
from jobs.table import LabelTable

DEFAULT_RETENTION_HOURS = 168  # a week: a reader still on an older version keeps its files
# Smaller than Delta's usual 128-256 MB: a relabel commit rewrites whole files, so the file
# size bounds what one commit copies (docs/benchmarks.md, "Label table and planning at scale").
TARGET_FILE_BYTES = 32 << 20
# Row groups of this many rows: the skip test reads one row group's video_uri column for each
# listed video's neighbourhood (jobs/lookup.py), so smaller groups make a few new videos cheap.
ROW_GROUP_ROWS = 128 * 1024


def writer_properties():
    from deltalake import WriterProperties

    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS)


@dataclass
class MigrationResult:
    old_rows: int
    current_rows: int
    version: int


def read_legacy(table: LabelTable) -> pa.Table | None:
    """Every row of the first layout (run_id=<run>/part-*.parquet), all runs."""
    selector = pafs.FileSelector(table.root, recursive=True, allow_not_found=True)
    files = [i.path for i in table.fs.get_file_info(selector)
             if i.type == pafs.FileType.File and i.path.endswith(".parquet")
             and not any(p.startswith((".", "_")) for p in i.path[len(table.root):].split("/"))]
    if not files:
        return None
    # run_id is a column inside the files: read them without hive partitioning.
    return pads.dataset(sorted(files), filesystem=table.fs, format="parquet").to_table()


def latest_rows(rows: pa.Table) -> pa.Table:
    """Per video, the rows of the run that labelled it last (ties: the larger run_id)."""
    runs = rows.select(["video_uri", "labelled_at", "run_id"])
    newest = runs.group_by("video_uri").aggregate([("labelled_at", "max")]).rename_columns(["video_uri", "labelled_at"])
    latest = runs.join(newest, keys=["video_uri", "labelled_at"], join_type="inner")
    latest = latest.group_by("video_uri").aggregate([("run_id", "max")]).rename_columns(["video_uri", "run_id"])
    key = pc.binary_join_element_wise(rows["video_uri"], rows["run_id"], "\x00")
    latest_key = pc.binary_join_element_wise(latest["video_uri"], latest["run_id"], "\x00")
    return rows.filter(pc.is_in(key, value_set=latest_key))


def migrate(output_uri: str) -> MigrationResult:
    """Turn the first layout's current rows into version 0 of a Delta table at the same place.

    The old files stay where they are (Delta readers ignore files not in the log), so nothing
    is lost; delete the run_id=* folders once the new table has been checked.
    """
    from deltalake import write_deltalake

    table = LabelTable(output_uri)
    if table.exists():
        raise JobError(f"{table.uri} is already a Delta table; nothing to migrate")
    old = read_legacy(table)
    if old is None:
        raise JobError(f"{table.uri}: no label files of the old layout (run_id=*/part-*.parquet) to migrate")
    current = latest_rows(old)
    embed = current.schema.field("embedding").type.list_size if "embedding" in current.column_names else 0
    schema = output_schema(max(embed, 0), "probs" in current.column_names)
    columns = {f.name: current[f.name].cast(f.type) if f.name in current.column_names else pa.nulls(current.num_rows, f.type)
               for f in schema}
    current = with_flat_columns(pa.table(columns, schema=schema)).sort_by([("video_uri", "ascending"),
                                                                           ("segment_index", "ascending")])
    write_deltalake(table.uri, current, mode="error", storage_options=table.storage_options, name="stam_labels",
                    description="STAM video labels: one current row per (video_uri, segment_index)")
    version = table.snapshot().version()
    run_id = new_run_id()
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    write_run_record(table, run_id, {"run_id": run_id, "status": "completed", "kind": "migration",
                                     "started_at": now, "finished_at": now,
                                     "counts": {"old_rows": old.num_rows, "current_rows": current.num_rows},
                                     "table_version": version})
    return MigrationResult(old.num_rows, current.num_rows, version)


def optimize(output_uri: str, retention_hours: int = DEFAULT_RETENTION_HOURS) -> dict:
    """Compact small files into large ones sorted by video_uri, remove unreferenced files, and
    checkpoint the log and remove its expired entries (older than the table's
    ``delta.logRetentionDuration``, 30 days by default: the time travel ``diff`` can reach)."""
    table = LabelTable(output_uri)
    delta = table.snapshot()
    if delta is None:
        raise JobError(f"{table.uri}: no label table here")
    metrics = delta.optimize.z_order(["video_uri"], target_size=TARGET_FILE_BYTES,
                                     writer_properties=writer_properties())
    delta = table.snapshot()
    removed = delta.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    delta = table.snapshot()
    delta.create_checkpoint()
    delta.cleanup_metadata()
    return {"files_added": metrics.get("numFilesAdded"), "files_removed": metrics.get("numFilesRemoved"),
            "vacuumed": len(removed), "version": delta.version()}

