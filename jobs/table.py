"""The label table: a Delta Lake table under OUTPUT (run records beside it: jobs/runs.py).

    OUTPUT/_delta_log/...        the transaction log: every commit is a table version
    OUTPUT/part-*.parquet        data files (clustered by video_uri; not partitioned)

The latest version holds exactly one row per (video_uri, segment_index): the current labels.
Earlier versions are the history (``DeltaTable.history()``, time travel). Delta readers ignore
``_``-prefixed paths, so the run records never show up as rows.

Commit protocol (``commit``): a batch of *whole videos* replaces those videos in one
transaction: ``write_deltalake(mode="overwrite", predicate="video_uri IN (...)")`` deletes every
current row of the batch's videos (stale windows included) and adds the batch. delta-rs prunes
the files by their video_uri statistics and rewrites only files that hold one of the videos, so
a commit of new videos rewrites nothing and a relabel rewrites the files of its videos, not the
table; the rows it copies go into files of about a commit's size (REWRITE_FILE_BYTES), so a
relabel in URI order copies each row about once. Each commit records a Delta app transaction
(app id = run id, version = the run's commit sequence); before every try the committer reads it
back and skips a commit that already landed, so a retry after a lost response adds nothing. A
concurrent commit that wrote one of the batch's videos is a conflict (the predicate names them),
retried on a fresh snapshot; storage errors that can pass (timeouts, 5xx, throttling) are retried
with backoff for a bounded time, the others (not found, not a folder, access denied, no
credentials) fail at once (``jobs.transient.is_transient``, for reads too; a commit gets one
more try on a fresh snapshot, as its snapshot's files may have been vacuumed meanwhile).
Checkpoints every CHECKPOINT_INTERVAL versions keep opening the table cheap (``optimize``
removes expired log files).

Reading: through ``file_uris()`` and pyarrow, not ``to_pyarrow_table``/``to_pandas``: those
made the process abort at exit in tests here (delta-rs #2184, apache/arrow #34314).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from jobs.config import JobConfig
from jobs.schema import HUMAN_COLUMNS, keep_human_columns, plain_schema, with_flat_columns
from jobs.storage import StorageError, delta_storage_options, fs_path, is_s3, put_bytes, resolve
from jobs.transient import is_transient

log = logging.getLogger("stam_label")

READ_RETRY_S = 120.0  # reads of the table retry storage errors this long
KEY = ("video_uri", "segment_index")
CHECKPOINT_INTERVAL = 100  # versions between Delta checkpoints (opening reads one + at most 99 JSON files)
# Files a commit writes (its rows and the rows it copies): about a commit's worth of rows, so
# the next commit of a relabel in URI order copies at most one such file, not a large one again.
REWRITE_FILE_BYTES = 256 << 10


class CommitError(Exception):
    """A commit still failing after its bounded retries."""


@dataclass
class CommitResult:
    version: int | None  # the table version written; None when the commit had already landed
    rows: int
    rewritten_rows: int = 0  # rows copied into new files because their file held a replaced video
    tries: int = 1


class LabelTable:
    def __init__(self, output_uri: str, *, commit_timeout_s: float = JobConfig.commit_timeout_s):
        self.fs, self.root = resolve(output_uri)
        self.uri = output_uri.rstrip("/") if is_s3(output_uri) else self.root
        self.storage_options = delta_storage_options(self.uri)
        self.commit_timeout_s = commit_timeout_s
        self._is_local = isinstance(self.fs, pafs.LocalFileSystem)

    # ---- layout ----------------------------------------------------------------------
    def exists(self) -> bool:
        return self._read(self._exists, "look for the label table")

    def _exists(self) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options)

    def _read(self, fn, what: str):
        from deltalake.exceptions import DeltaError, TableNotFoundError

        deadline, delay, refused = time.monotonic() + min(self.commit_timeout_s, READ_RETRY_S), 0.5, False
        while True:
            try:
                return fn()
            except TableNotFoundError:
                raise
            except (DeltaError, OSError) as exc:
                if not is_transient(exc):  # not found, not a folder, refused: a second answer is the verdict
                    # One more try at once, as commits do: a log or data file removed by a concurrent
                    # cleanup or `optimize` is "not found" once and gone from the next snapshot.
                    if refused:
                        raise StorageError(f"{self.uri}: cannot {what} ({_cause(exc)})") from exc
                    refused = True
                    continue
                if time.monotonic() + delay > deadline:
                    raise StorageError(f"{self.uri}: cannot {what} ({_short(exc)})") from exc
                log.warning("%s: cannot %s (%s); retrying in %.1f s", self.uri, what, _short(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    def is_legacy(self) -> bool:
        """The first layout (``run_id=<run>/part-*.parquet``), which `stam-label migrate` converts."""
        if self.exists():
            return False
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot list output ({str(exc).splitlines()[0]})") from exc
        return any(i.type == pafs.FileType.Directory and i.base_name.startswith("run_id=") for i in infos)

    def check_writable(self) -> None:
        """Fail before any work when OUTPUT cannot be written (bad bucket, no permission)."""
        probe = f"{self.root}/_runs/.probe-{secrets.token_hex(4)}"
        made = self._missing_folders(f"{self.root}/_runs")  # deepest first
        try:
            put_bytes(self.fs, probe, b"")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise StorageError(f"{self.uri}: output is not writable ({str(exc).splitlines()[0]})") from exc
        finally:
            # The folders the probe made go again: a run that fails before its record (bad weights)
            # leaves no OUTPUT behind; the run record's write makes them when the run starts.
            for folder in made:
                with contextlib.suppress(OSError):  # not empty: another run wrote there meanwhile
                    os.rmdir(folder)

    def _missing_folders(self, path: str) -> list[str]:
        """``path`` and its ancestors that do not exist yet (local OUTPUT only), deepest first."""
        missing = []
        while self._is_local and not os.path.exists(path) and path != os.path.dirname(path):
            missing.append(path)
            path = os.path.dirname(path)
        return missing

    def ensure_created(self, schema: pa.Schema) -> None:
        """Create the table unless it exists; what can pass (a reset, a 503) is retried like a read."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        def create() -> None:
            try:  # mode="ignore": a try whose answer was lost, or a concurrent run, made it already
                DeltaTable.create(self.uri, with_flat_columns(schema), mode="ignore", name="stam_labels",
                                  description="STAM video labels: one current row per (video_uri, segment_index)",
                                  configuration={"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)},
                                  storage_options=self.storage_options)
            except (DeltaError, OSError):
                if not self._exists():  # a concurrent run creating it first is fine
                    raise

        if not self.exists():
            self._read(create, "create the label table")

    # ---- committing ------------------------------------------------------------------
    def commit(self, rows: pa.Table, *, run_id: str, seq: int) -> CommitResult:
        """Replace the videos in ``rows`` (whole videos only) in one idempotent transaction.

        The human review of these videos survives their relabelling (read on the same snapshot).
        """
        rows = _last_per_key(with_flat_columns(rows)).sort_by([("video_uri", "ascending"),
                                                               ("segment_index", "ascending")])
        return self.rewrite(lambda table: keep_human_columns(rows, self._reviewed(table, rows)), run_id=run_id,
                            seq=seq)

    def rewrite(self, make_rows, *, run_id: str, seq: int) -> CommitResult:
        """Replace whole videos with ``make_rows(snapshot)`` in one idempotent transaction.

        ``make_rows`` is called on every try with the snapshot the try commits against, so rows
        it derives from the table (a review import) are never older than what they replace: a
        concurrent commit of one of its videos is a conflict, and the next try reads again.
        """
        from deltalake.exceptions import (
            CommitFailedError,
            DeltaError,
            DeltaProtocolError,
            SchemaMismatchError,
        )

        deadline = time.monotonic() + self.commit_timeout_s
        delay, tries, refused = 0.5, 0, False
        while True:
            tries += 1
            try:
                table = self._snapshot()
                done = table.transaction_version(run_id)
                if done is not None and done >= seq:
                    return CommitResult(None, 0, tries=tries)  # landed; its answer was lost
                rows = make_rows(table)
                version = self._replace(table, rows, run_id, seq)
                return CommitResult(version, rows.num_rows, rewritten_rows=self._rows_copied(version, rows.num_rows),
                                    tries=tries)
            except (SchemaMismatchError, DeltaProtocolError) as exc:
                raise CommitError(f"{self.uri}: commit {seq} of run {run_id} refused: {_short(exc)}") from exc
            except CommitFailedError as exc:
                reason, wait = f"conflict with a concurrent commit ({_short(exc)})", random.uniform(0.05, 0.5)
            except (DeltaError, OSError) as exc:
                # One more try on a fresh snapshot even for what looks permanent: a data file of a
                # stale snapshot vacuumed meanwhile (`optimize --retention-hours 0`) is "not found"
                # once and gone from the next snapshot. A second such answer is the verdict.
                if not is_transient(exc) and refused:
                    raise CommitError(f"{self.uri}: commit {seq} of run {run_id} failed: {_cause(exc)}") from exc
                refused = refused or not is_transient(exc)
                reason, wait = _short(exc), delay
                delay = min(delay * 2, 30.0)
            if time.monotonic() + wait > deadline:
                raise CommitError(f"{self.uri}: commit {seq} of run {run_id} still failing after {tries} tries "
                                  f"and {self.commit_timeout_s:.0f} s: {reason}")
            log.warning("commit %d of run %s failed (%s); retrying in %.1f s", seq, run_id, reason, wait)
            time.sleep(wait)

    def rows_of(self, table, uris, columns: list[str] | None = None) -> pa.Table | None:
        """The current rows of the videos ``uris`` in ``table`` (a snapshot), in its schema (plain types);
        read only from the files and row groups that can hold them (jobs.lookup)."""
        from jobs.lookup import rows_of

        schema = plain_schema(pa.schema(table.schema().to_arrow()))
        names = columns or schema.names
        found = rows_of(self.fs, self.file_ranges(table), uris, names)
        if found is None:
            return None
        return found.cast(pa.schema([schema.field(n) for n in names]))

    def _replace(self, table, rows: pa.Table, run_id: str, seq: int) -> int:
        """One transaction: the batch's videos' current rows out, ``rows`` in. Returns its version."""
        from deltalake import write_deltalake
        from deltalake.transaction import CommitProperties, Transaction

        videos = ", ".join(_sql_literal(u) for u in pc.unique(rows["video_uri"]).to_pylist())
        write_deltalake(table, rows, mode="overwrite", predicate=f"video_uri IN ({videos})", schema_mode="merge",
                        target_file_size=REWRITE_FILE_BYTES,
                        commit_properties=CommitProperties(app_transactions=[Transaction(run_id, seq)],
                                                           custom_metadata={"stam_label.run_id": run_id,
                                                                            "stam_label.commit": str(seq)}))
        return table.version()  # the object follows its own write

    def _rows_copied(self, version: int, written: int) -> int:
        """Rows the commit at ``version`` copied from the files it replaced: its added rows minus its own.

        Read from that version's log entry (one small JSON file), not from a snapshot.
        """
        path = f"{self.root}/_delta_log/{version:020d}.json"
        added = 0
        try:
            with self.fs.open_input_stream(path) as f:
                for line in f.read().decode().splitlines():
                    action = json.loads(line) if line.strip() else {}
                    stats = (action.get("add") or {}).get("stats")
                    if stats:
                        added += int(json.loads(stats).get("numRecords", 0))
        except (OSError, ValueError) as exc:
            log.debug("cannot read the log entry of version %d (%s): rows copied unknown", version, exc)
            return 0
        return max(added - written, 0)

    def _reviewed(self, table, rows: pa.Table) -> pa.Table | None:
        """The current human columns of the videos in ``rows`` that have been reviewed (None: none).

        Read like the skip test (jobs.lookup): only the files and row groups that can hold them.
        """
        from jobs.lookup import rows_of

        if "human_label" not in pa.schema(table.schema().to_arrow()).names:
            return None  # a table from before the review columns: nothing to keep
        # Only files holding a review (the log's null counts say which): a commit of new videos
        # into a table with few reviews reads next to nothing.
        files = [f for f in self.file_ranges(table) if f.reviewed]
        current = rows_of(self.fs, files, rows["video_uri"], ["video_uri", *HUMAN_COLUMNS]) if files else None
        return None if current is None else current.filter(pc.is_valid(current["human_label"]))

    def _snapshot(self, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(self.uri, version=version, storage_options=self.storage_options)

    def snapshot(self, version: int | None = None):
        """The latest (or a given) version as a ``deltalake.DeltaTable``; None when there is no table.

        Reads are retried with backoff like commits (delta-rs does not retry a listing whose
        answer broke off); what still fails is a StorageError naming the table.
        """
        return self._read(lambda: self._snapshot(version) if self._exists() else None, "read the label table")

    # ---- reading ---------------------------------------------------------------------
    def data_files(self, version: int | None = None) -> list[str]:
        """The Parquet files of the current (or a given) version, as paths in ``self.fs``."""
        table = self.snapshot(version)
        if table is None:
            return []
        return [fs_path(u) for u in table.file_uris()]

    def file_ranges(self, snapshot=None) -> list:
        """The current data files with their video_uri bounds (jobs.lookup.FileRange), from the log."""
        from jobs.lookup import file_ranges

        table = snapshot if snapshot is not None else self.snapshot()
        return [] if table is None else file_ranges(table, fs_path)

    def schema(self) -> pa.Schema | None:
        table = self.snapshot()
        return None if table is None else pa.schema(table.schema().to_arrow())

    def dataset(self) -> pads.Dataset | None:
        """The current rows as a pyarrow dataset (older files get nulls for newer columns)."""
        table = self.snapshot()
        if table is None:
            return None
        schema = plain_schema(pa.schema(table.schema().to_arrow()))
        try:
            return pads.dataset([fs_path(u) for u in table.file_uris()], schema=schema, format="parquet",
                                filesystem=self.fs)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read label table ({_short(exc)})") from exc

    def read_current(self, columns: list[str] | None = None) -> pa.Table | None:
        """The current rows (one per video and segment), or None when nothing is committed yet."""
        dataset = self.dataset()
        if dataset is None:
            return None
        if columns is not None:
            columns = [c for c in columns if c in dataset.schema.names]
        try:
            return dataset.to_table(columns=columns)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read label table ({_short(exc)})") from exc


def _last_per_key(rows: pa.Table) -> pa.Table:
    """One row per (video_uri, segment_index): a retried Ray task may deliver a row twice."""
    if rows.num_rows < 2:
        return rows
    indexed = rows.append_column("_i", pa.array(range(rows.num_rows), pa.int64()))
    last = indexed.group_by(list(KEY)).aggregate([("_i", "max")])["_i_max"]
    if len(last) == rows.num_rows:
        return rows
    return rows.take(pc.sort_indices(last))


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cause(exc: BaseException) -> str:
    """The innermost line of a delta-rs error chain (``... Not a directory (os error 20)``): the reason,
    where the first line is only the layer (``Generic LocalFileSystem error``)."""
    lines = [line.strip().lstrip("\u21b3").strip() for line in _plain(str(exc)).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _plain(text: str) -> str:
    """Without the terminal colour codes delta-rs puts in its error chains."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
