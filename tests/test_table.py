"""The label table's commit protocol and current-row logic, on a folder and on S3."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from jobs.schema import output_schema
from jobs.storage import StorageError, list_videos
from jobs.table import LabelTable


def rows(run_id: str, minute: int, *specs) -> pa.Table:
    """specs: (uri, status, error_kind, version)."""
    at = dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist([
        {"video_uri": uri, "mode": "video", "segment_index": 0, "status": status, "error_kind": kind,
         "error": None if status == "ok" else f"{uri}: broken", "source_version": version,
         "weights_sha256": "w1", "run_id": run_id, "labelled_at": at}
        for uri, status, kind, version in specs], schema=output_schema())


@pytest.fixture(params=["local", "s3"])
def table(request, tmp_path, local_s3) -> LabelTable:
    if request.param == "local":
        return LabelTable(str(tmp_path / "out"))
    local_s3.create_bucket(f"t-{tmp_path.name.lower().replace('_', '-')}"[:60])
    return LabelTable(f"s3://t-{tmp_path.name.lower().replace('_', '-')}"[:65] + "/labels")


def test_current_rows_and_skip_keys(table):
    table.check_writable()
    table.write_part("r1", 0, rows("r1", 1, ("a", "ok", None, "1:1"), ("b", "error", "timeout", "2:2"),
                                   ("c", "error", "format_error", "3:3")))
    table.write_part("r2", 0, rows("r2", 2, ("a", "ok", None, "1:9"), ("b", "ok", None, "2:2")))
    assert table.read_all().num_rows == 5
    current = {r["video_uri"]: r["run_id"] for r in table.read_current().to_pylist()}
    assert current == {"a": "r2", "b": "r2", "c": "r1"}
    # A final error (format_error) is skipped for the same version; a retryable one is not.
    assert table.done_keys("w1", "video") == {("a", "1:9"), ("b", "2:2"), ("c", "3:3")}
    assert table.done_keys("other-weights", "video") == set()
    assert table.done_keys("w1", "window=10,stride=10") == set()

    table.write_part("r3", 0, rows("r3", 3, ("c", "error", "timeout", "3:3")))
    assert ("c", "3:3") not in table.done_keys("w1", "video")

    # The plain reader the README promises sees the same committed rows.
    dataset = pads.dataset(table.root, filesystem=table.fs, format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 6


def test_hidden_temp_files_are_never_read(tmp_path):
    table = LabelTable(str(tmp_path / "out"))
    table.write_part("r1", 0, rows("r1", 1, ("a", "ok", None, "1:1")))
    # What a run killed mid-write leaves behind: a hidden, partial temp file.
    (tmp_path / "out" / "run_id=r1" / ".part-00001.parquet.dead.tmp").write_bytes(b"PAR1 partial")
    assert table.read_all().num_rows == 1
    assert table.remove_stale_temp_files() == 1
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_empty_output_and_unwritable_output(tmp_path):
    assert LabelTable(str(tmp_path / "nothing")).read_current() is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="not writable"):
        LabelTable(str(blocker / "out")).check_writable()


def test_listing_and_manifests(tmp_path):
    (tmp_path / "v" / "deep").mkdir(parents=True)
    for name in ("a.MP4", "deep/b.webm", "c.txt"):
        (tmp_path / "v" / name).write_bytes(b"x" * 3)
    refs = list_videos(str(tmp_path / "v"))
    assert [r.uri.rsplit("/", 1)[-1] for r in refs] == ["a.MP4", "b.webm"]
    assert all(r.size == 3 and r.version.startswith("3:") for r in refs)

    pa_manifest = tmp_path / "m.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"video_uri": [str(tmp_path / "v" / "a.MP4"), str(tmp_path / "gone.mp4")]}), pa_manifest)
    refs = list_videos(str(pa_manifest))
    assert [r.version is not None for r in refs] == [True, False]

    bad = tmp_path / "m.csv"
    bad.write_text("path\nx.mp4\n")
    with pytest.raises(StorageError, match="video_uri"):
        list_videos(str(bad))
    with pytest.raises(StorageError, match="does not exist"):
        list_videos(str(tmp_path / "absent"))
