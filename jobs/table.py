"""The label table on storage and its commit protocol.

Layout under OUTPUT (a folder or an s3:// prefix):

    run_id=<run>/part-00000.parquet   committed label rows (hive-partitioned by run)
    _runs/<run>.json                  run manifest: configuration, versions, counts, timings

Commit protocol: a data file is the unit of commit and appears whole or not at all: locally
it is written to a hidden temp file and renamed; on S3 it is uploaded in one request, so the
object only exists once complete. Rows are written by the driver only, after the model, in
files of ``rows_per_file`` rows, so a killed run loses at most the rows it had not yet
written, and every row that exists is complete. Hidden (``.``) and ``_`` paths are ignored by
pyarrow's dataset reader, so ``pyarrow.dataset.dataset(OUTPUT, partitioning="hive")`` sees
committed rows only.

The table is append-only: relabelling a video (new weights, a changed file, --relabel, a
retried error) adds a row, and the *current* row of a video is the one of its latest run.
``read_current`` gives exactly one current row (or one set of segment rows) per video.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.schema import RETRYABLE_ERROR_KINDS
from jobs.storage import StorageError, resolve


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class LabelTable:
    def __init__(self, output_uri: str):
        self.uri = output_uri.rstrip("/")
        self.fs, self.root = resolve(output_uri)

    # ---- writing ---------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail before any work when OUTPUT cannot be written (bad bucket, no permission)."""
        probe = f"{self.root}/_runs/.probe-{secrets.token_hex(4)}"
        try:
            self._put(probe, b"")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise StorageError(f"{self.uri}: output is not writable ({str(exc).splitlines()[0]})") from exc

    def write_part(self, run_id: str, seq: int, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        path = f"{self.root}/run_id={run_id}/part-{seq:05d}.parquet"
        self._put(path, buf.getvalue())
        return path

    def write_manifest(self, run_id: str, manifest: dict) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        self._put(f"{self.root}/_runs/{run_id}.json", body)

    def _put(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        if isinstance(self.fs, pafs.LocalFileSystem):
            os.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{os.path.basename(path)}.{secrets.token_hex(4)}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX: readers see the old state or the whole file
        else:
            # One upload; S3 makes the object visible only when the upload completes.
            with self.fs.open_output_stream(path) as f:
                f.write(data)

    def remove_stale_temp_files(self) -> int:
        """Temp files of killed runs: never read (hidden), removed to keep the prefix tidy."""
        if not isinstance(self.fs, pafs.LocalFileSystem) or not os.path.isdir(self.root):
            return 0
        removed = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    os.remove(os.path.join(dirpath, name))
                    removed += 1
        return removed

    # ---- reading ---------------------------------------------------------------------
    def read_all(self, columns: list[str] | None = None) -> pa.Table | None:
        """Every committed row (all runs), or None when nothing is committed yet."""
        # A listing of the prefix, not a HEAD of it: least-privilege S3 policies allow only that.
        selector = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        try:
            files = [i.path for i in self.fs.get_file_info(selector)
                     if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                     and not any(part.startswith((".", "_")) for part in i.path[len(self.root):].split("/"))]
            if not files:
                return None
            dataset = pads.dataset(sorted(files), filesystem=self.fs, format="parquet",
                                   partitioning=pads.partitioning(flavor="hive"), partition_base_dir=self.root)
            return dataset.to_table(columns=columns)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read label table ({str(exc).splitlines()[0]})") from exc

    def read_current(self, columns: list[str] | None = None) -> pa.Table | None:
        """Exactly the rows of each video's latest run."""
        wanted = None if columns is None else sorted(set(columns) | {"video_uri", "run_id", "labelled_at"})
        table = self.read_all(wanted)
        if table is None or table.num_rows == 0:
            return table
        return latest_rows(table).select(columns) if columns else latest_rows(table)

    def read_manifests(self) -> list[dict]:
        selector = pafs.FileSelector(f"{self.root}/_runs", allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.path.endswith(".json"):
                with self.fs.open_input_stream(info.path) as f:
                    out.append(json.loads(f.read()))
        return sorted(out, key=lambda m: m.get("started_at", ""))

    def done_keys(self, weights_sha256: str | None, mode: str) -> set[tuple[str, str]]:
        """(video_uri, source_version) pairs a new run with these weights can skip."""
        columns = ["video_uri", "source_version", "weights_sha256", "status", "error_kind", "mode"]
        table = self.read_current(columns)
        if table is None:
            return set()
        done = set()
        for row in table.to_pylist():
            if row["weights_sha256"] != weights_sha256 or row["mode"] != mode:
                continue
            if row["status"] == "error" and row["error_kind"] in RETRYABLE_ERROR_KINDS:
                continue
            done.add((row["video_uri"], row["source_version"]))
        return done


def latest_rows(table: pa.Table) -> pa.Table:
    """Keep, per video, the rows of the run that labelled it last (ties: the larger run_id)."""
    runs = table.select(["video_uri", "labelled_at", "run_id"])
    newest = runs.group_by("video_uri").aggregate([("labelled_at", "max")])
    newest = newest.rename_columns(["video_uri", "labelled_at"])
    latest = runs.join(newest, keys=["video_uri", "labelled_at"], join_type="inner")
    latest = latest.group_by("video_uri").aggregate([("run_id", "max")]).rename_columns(["video_uri", "run_id"])
    # Filter rather than join the full table: Arrow's hash join does not carry list columns.
    key = pc.binary_join_element_wise(table["video_uri"], table["run_id"], "\x00")
    latest_key = pc.binary_join_element_wise(latest["video_uri"], latest["run_id"], "\x00")
    return table.filter(pc.is_in(key, value_set=latest_key))
