"""The stage contract: the Arrow schema of every batch that travels between stages, defined once.

    WORK_ITEM          plan -> (windows) -> decode: a video, or one window of it
    decoded_schema(T)  decode -> label: the work item, what the decoder saw, and the T frames
    FACTS              label -> driver, beside the output rows: where the stages ran and what
                       they cost, and in window mode what the video-level row is made of

Every batch is an Arrow table of its schema (Ray concatenates blocks from different tasks, so
the types are fixed); a missing value is null. FACTS are for the driver and never written.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.columns import DECODER_FACTS, SOURCE
from jobs.schema import output_schema
from stam_core.video.frames import CROP

WORK_ITEM = pa.schema([
    *((name, output_schema().field(name).type) for name in ("video_uri", *SOURCE)),
    ("segment_index", pa.int32()),  # the window's index; 0 for a whole video
    ("num_segments", pa.int32()),  # windows of the video; 1 for a whole video
    ("start_s", pa.float64()),  # the window's bounds; null: the whole video
    ("end_s", pa.float64()),
    ("error", pa.string()),  # set when an earlier stage failed: passed on as the row's error
    ("error_kind", pa.string()),
])

# What the decoder saw; null on a row that failed. The facts' types are the output schema's
# (jobs/schema.py), so they are declared there only.
DECODE_INFO = pa.schema([
    ("ok", pa.bool_()),
    *((name, output_schema().field(name).type) for name in DECODER_FACTS),
    ("decode_node", pa.string()),  # the Ray node that decoded it
])

FACTS = pa.schema([
    ("decode_node", pa.string()),
    ("model_node", pa.string()),
    ("model_s", pa.float64()),  # the row's share of its batch's model time
    ("num_segments", pa.int32()),  # window mode: windows the video has
    ("window_probs", pa.list_(pa.float32())),  # window mode: the window's probabilities
])


def frames_field(num_frames: int) -> pa.Field:
    """A clip's uint8 frames [T, CROP, CROP, 3], flattened; null on a row that failed."""
    return pa.field("frames", pa.list_(pa.uint8(), num_frames * CROP * CROP * 3))


def decoded_schema(num_frames: int) -> pa.Schema:
    return pa.schema([*WORK_ITEM, *(f for f in DECODE_INFO if f.name not in WORK_ITEM.names),
                      frames_field(num_frames)])


def labelled_schema(output: pa.Schema) -> pa.Schema:
    """The model stage's batches: the output rows, then FACTS."""
    return pa.schema([*output, *FACTS])


def to_work_items(plan: pa.Table) -> pa.Table:
    """Plan rows -> work items: a whole video each (the windows stage may split them)."""
    n = plan.num_rows
    defaults = {"segment_index": pa.array(np.zeros(n, np.int32)), "num_segments": pa.array(np.ones(n, np.int32))}
    columns = [plan[f.name].cast(f.type) if f.name in plan.column_names else defaults.get(f.name, pa.nulls(n, f.type))
               for f in WORK_ITEM]
    return pa.table(columns, schema=WORK_ITEM)


def frames_array(frames: np.ndarray, ok: np.ndarray) -> pa.Array:
    """uint8 clips [n, T, H, W, 3] -> the frames column (no copy), null where ``ok`` is False."""
    flat = pa.array(frames.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(frames.shape[1:])), mask=pa.array(~ok))


def ok_frames(batch: pa.Table, num_frames: int) -> np.ndarray:
    """The frames of the batch's ok rows as uint8 [n_ok, T, CROP, CROP, 3]."""
    frames = batch["frames"].filter(batch["ok"])
    values = pc.list_flatten(frames).to_numpy(zero_copy_only=False) if len(frames) else np.zeros(0, np.uint8)
    return values.reshape(-1, num_frames, CROP, CROP, 3)


def split_labelled(batch: pa.Table, output: pa.Schema) -> tuple[pa.Table, pa.Table]:
    """A model-stage batch -> (its rows in the output schema, its FACTS)."""
    return batch.select(output.names).cast(output), batch.select(FACTS.names)
