"""The stage contract (jobs.stages.records): typed Arrow batches, nulls for missing values."""
import numpy as np
import pyarrow as pa

from jobs.schema import output_schema
from jobs.stages.records import (
    FACTS,
    WORK_ITEM,
    decoded_schema,
    frames_array,
    labelled_schema,
    ok_frames,
    split_labelled,
    to_work_items,
)
from stam_core.video.frames import CROP


def test_plan_rows_become_whole_video_work_items_with_nulls_not_sentinels():
    plan = pa.table({"video_uri": ["s3://b/a.mp4", "s3://b/b.mp4"], "source_size": [10, None],
                     "source_version": ["10:1", None], "error_kind": [None, "list_error"],
                     "error": [None, "s3://b/b.mp4: gone"]})
    items = to_work_items(plan)
    assert items.schema == WORK_ITEM
    rows = items.to_pylist()
    assert rows[0] == {"video_uri": "s3://b/a.mp4", "source_size": 10, "source_version": "10:1", "segment_index": 0,
                       "num_segments": 1, "start_s": None, "end_s": None, "error": None, "error_kind": None}
    assert rows[1]["source_size"] is None and rows[1]["error_kind"] == "list_error"


def test_frames_survive_slicing_and_concatenation_and_failed_rows_are_null():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (3, 2, CROP, CROP, 3), dtype=np.uint8)
    ok = np.array([True, False, True])
    schema = decoded_schema(2)
    n = len(ok)
    columns = {f.name: pa.nulls(n, f.type) for f in schema}
    columns.update(ok=pa.array(ok), frames=frames_array(clips, ok))
    batch = pa.table([columns[f.name] for f in schema], schema=schema)
    assert batch["frames"].null_count == 1
    # Ray slices and concatenates blocks: the frames of the ok rows come back whole, in order.
    joined = pa.concat_tables([batch.slice(1, 2), batch.slice(0, 1)])
    np.testing.assert_array_equal(ok_frames(joined, 2), clips[[2, 0]])
    assert ok_frames(batch.slice(1, 1), 2).shape == (0, 2, CROP, CROP, 3)


def test_labelled_batches_split_into_output_rows_and_facts():
    output = output_schema()
    schema = labelled_schema(output)
    batch = schema.empty_table()
    rows, facts = split_labelled(batch, output)
    assert rows.schema == output and facts.schema == FACTS
    assert not set(FACTS.names) & set(output.names), "the facts never reach the table"
