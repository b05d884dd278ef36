"""Synthetic label tables for benchmarks/table.py and benchmarks/scale.py: rows, writing, file counts.

One whole-video 'ok' row per URI ``s3://bucket/videos/<9 digits>.mp4``; existing videos are every
STEP-th number, so new ones fall between them.
"""
from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa

SHA = "ab" * 32  # the weights_sha256 of every synthetic row
STEP = 4  # existing videos are numbers 0, 4, 8, ...: new ones fit between them
COMMIT = 2000
COMPACT_BYTES = 32 << 20  # jobs.tools.maintenance.TARGET_FILE_BYTES
ROW_GROUP_ROWS = 128 * 1024  # jobs.tools.maintenance.ROW_GROUP_ROWS (as a literal: older checkouts lack it)


PREFIX = "s3://bucket/videos/"


def uri(n, prefix: str = PREFIX) -> str:
    return f"{prefix}{n:09d}.mp4"


def synth_rows(numbers: np.ndarray, *, run_id: str = "20260101T000000Z-000000", sha: str = SHA,
               versions: list | None = None, seed: int = 0, prefix: str = PREFIX) -> pa.Table:
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
        "video_uri": pa.array([uri(int(i), prefix) for i in numbers], pa.string()),
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
                sha: str = SHA, versions=None, prefix: str = PREFIX) -> float:
    """A sorted table of `rows` videos (numbers 0, STEP, ...) in big appends; returns seconds."""
    from deltalake import write_deltalake

    start = time.perf_counter()
    numbers = np.arange(rows, dtype=np.int64) * STEP
    if layout == "compacted":  # one streaming write: files up to 128 MB, as optimize leaves them
        def batches():
            for lo in range(0, rows, chunk):
                part = synth_rows(numbers[lo:lo + chunk], sha=sha, seed=lo, prefix=prefix,
                                  versions=None if versions is None else versions[lo:lo + chunk])
                yield from part.to_batches()

        schema = synth_rows(numbers[:1], sha=sha).schema
        from deltalake import WriterProperties

        props = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)
        write_deltalake(table_uri, pa.RecordBatchReader.from_batches(schema, batches()), mode="append",
                        storage_options=storage_options, target_file_size=COMPACT_BYTES, writer_properties=props)
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

