"""jobs.reconcile: planned videos that never came back become "lost" rows, the same on the driver
(a plan of up to LOCAL_PLAN_MAX_ROWS) and on Ray (larger plans)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_table import rows

from jobs import reconcile
from jobs.plan import PLAN_TYPES, Plan
from jobs.runs import plan_path
from jobs.schema import output_schema
from jobs.table import LabelTable


@pytest.fixture
def half_done(tmp_path):
    """A plan of 6 videos made at version 1; this run then labelled a, c and e, another run b's window."""
    table = LabelTable(str(tmp_path / "out"))
    table.check_writable()
    table.ensure_created(output_schema())
    table.commit(rows("old", ("f", "ok", None, "1:1")), run_id="old", seq=1)  # before the plan: not "since"
    version = table.snapshot().version()
    uris = ["a", "b", "c", "d", "e", "f"]
    path = plan_path(table, "r1")
    table.fs.create_dir(path)
    planned = pa.table({"video_uri": uris, "source_size": [1] * 6, "source_version": [f"{u}:1" for u in uris]})
    pq.write_table(planned.cast(pa.schema([(n, PLAN_TYPES[n]) for n in planned.column_names])),
                   f"{path}/part-0.parquet", filesystem=table.fs)
    table.commit(rows("r1", ("a", "ok", None, "a:1"), ("c", "error", "timeout", "c:1")), run_id="r1", seq=1)
    table.commit(rows("r1", ("e", "ok", None, "e:1")), run_id="r1", seq=2)
    table.commit(rows("other", ("b", "ok", None, "b:1", 3)), run_id="other", seq=1)  # a window row: not video-level
    return table, Plan(listed=6, skipped=0, total=6, path=path, table_version=version)


def test_lost_on_the_driver_and_on_ray_agree(half_done, ray_head):
    import ray

    table, plan = half_done
    here = reconcile.lost_here(table, plan, "video")
    assert sorted(here["video_uri"].to_pylist()) == ["b", "d", "f"]
    ray.init(address=ray_head, ignore_reinit_error=True)
    on_ray = reconcile.lost(table, plan, "video").take_all()
    assert sorted(r["video_uri"] for r in on_ray) == ["b", "d", "f"]


def test_lost_rows_of_a_small_plan_need_no_ray(half_done, monkeypatch):
    table, plan = half_done
    monkeypatch.setattr(reconcile, "lost", lambda *a: pytest.fail("a small plan went to Ray"))
    got = [b for b in reconcile.lost_rows(table, plan, schema=output_schema(), run_id="r1", mode="video",
                                         batch_rows=2)]
    assert [b.num_rows for b in got] == [2, 1]
    rows_ = pa.concat_tables(got).to_pylist()
    assert sorted(r["video_uri"] for r in rows_) == ["b", "d", "f"]
    assert {(r["status"], r["error_kind"], r["run_id"]) for r in rows_} == {("error", "lost", "r1")}
    assert {r["video_uri"]: r["source_version"] for r in rows_}["d"] == "d:1"
