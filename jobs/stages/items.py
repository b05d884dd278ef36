"""The work item: what travels from the plan through windowing to decoding (one definition).

Ray concatenates blocks from different tasks, so every column has a fixed dtype, and a missing
value is spelled by that dtype's MISSING value (-1, -1.0 or ""), turned back into null when the
Labeler builds rows.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

# name -> (numpy dtype, missing value)
ITEM = {
    "video_uri": (object, ""),
    "source_size": (np.int64, -1),
    "source_version": (object, ""),
    "segment_index": (np.int32, 0),  # the window's index; 0 for a whole video
    "num_segments": (np.int32, 1),  # windows of the video (1 for a whole video)
    "start_s": (np.float64, -1.0),  # the window's bounds; -1: the whole video
    "end_s": (np.float64, -1.0),
    "error": (object, ""),  # set when an earlier stage failed: passed on as the row's error
    "error_kind": (object, ""),
}
ITEM_KEYS = tuple(ITEM)
PASSED_ON = ("video_uri", "source_size", "source_version", "segment_index", "num_segments", "start_s", "end_s")


def to_work_items(batch: pa.Table) -> dict[str, np.ndarray]:
    """Plan rows (nullable Arrow) -> the stages' fixed-dtype columns."""
    n = batch.num_rows
    out = {}
    for name, (dtype, missing) in ITEM.items():
        values = batch[name].to_pylist() if name in batch.column_names else [None] * n
        out[name] = np.asarray([missing if v is None else v for v in values], dtype=dtype)
    return out
