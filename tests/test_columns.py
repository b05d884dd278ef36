"""Every output column has exactly one role (jobs/columns.py); the batch schemas and the skip
columns take their names from the roles and their types from the output schema."""
from __future__ import annotations

from collections import Counter

from jobs import columns
from jobs.plan import DONE_FILTER_COLUMNS
from jobs.schema import output_schema
from jobs.segments import VIDEO_IDENTITY
from jobs.stages.records import DECODE_INFO, WORK_ITEM


def test_every_output_column_has_exactly_one_role():
    roles = Counter(name for names in columns.ROLES.values() for name in names)
    assert [name for name, n in roles.items() if n > 1] == []
    assert sorted(roles) == sorted(output_schema().names)


def test_batch_schemas_and_skip_columns_follow_the_roles():
    out = output_schema()
    for name in columns.DECODER_FACTS:
        assert DECODE_INFO.field(name).type == out.field(name).type
    for name in ("video_uri", *columns.SOURCE):
        assert WORK_ITEM.field(name).type == out.field(name).type
    assert set(columns.KEY) <= set(DONE_FILTER_COLUMNS) and set(columns.SKIP_KEY) <= set(DONE_FILTER_COLUMNS)
    assert set(DONE_FILTER_COLUMNS) <= set(out.names)
    assert "segment_index" not in VIDEO_IDENTITY and set(columns.IDENTITY) <= set(VIDEO_IDENTITY)
