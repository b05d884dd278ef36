"""`stam-label export`: the current label table as CSV / JSON lines / Parquet, local and S3."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import job_config as _config
from click.testing import CliRunner

from jobs.cli.export import export_command
from jobs.pipeline import run_job
from jobs.storage import s3_filesystem
from jobs.table import LabelTable
from jobs.tools.export import ExportError, export_labels
from jobs.tools.samples import make_sample_video

FLAT = ["video_uri", "label", "score", "labels", "scores", "status", "error"]
WINDOWED = ["video_uri", "segment_index", "segment_start_s", "segment_end_s"] + FLAT[1:]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_weights, ray_head) -> Path:
    """Two videos and a broken file; a.mp4 labelled a second time with top-3, so its latest row differs."""
    root = tmp_path_factory.mktemp("export")
    videos = root / "videos"
    videos.mkdir()
    for i, name in enumerate(("a.mp4", "b.mp4")):
        make_sample_video(videos / name, seed=i, seconds=1.0, fps=8, size=(96, 64))
    (videos / "broken.mp4").write_text("not a video")
    out = root / "labels"
    run_job(_config(tiny_weights, videos, out, ray_head))
    only_a = root / "only_a.txt"
    only_a.write_text(f"{videos / 'a.mp4'}\n")
    run_job(_config(tiny_weights, only_a, out, ray_head, relabel=True, top_k=3))
    return out




def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def read_back(path: Path) -> list[dict]:
    """Rows of an export, lists decoded, in the file's order."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text())):
        for key in ("labels", "scores"):
            row[key] = json.loads(row[key]) if row[key] else None
        for key in ("score", "segment_start_s", "segment_end_s"):
            if key in row:
                row[key] = float(row[key]) if row[key] else None
        if "segment_index" in row:
            row["segment_index"] = int(row["segment_index"])
        row["label"] = row["label"] or None
        row["error"] = row["error"] or None
        rows.append(row)
    return rows


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_export_formats_hold_the_current_rows(labelled, tmp_path, ext):
    dest = tmp_path / f"labels{ext}"
    result = export_labels(str(labelled), str(dest))
    assert result.rows == 3 and result.columns == FLAT
    rows = read_back(dest)
    assert [_name(r["video_uri"]) for r in rows] == ["a.mp4", "b.mp4", "broken.mp4"]
    assert list(rows[0]) == FLAT

    # Only the latest row per video: a.mp4 was relabelled with top-3, b.mp4 kept its top-5.
    assert LabelTable(str(labelled)).read_current().num_rows == 3  # one row per video, not per run
    current = {r["video_uri"]: r for r in LabelTable(str(labelled)).read_current().to_pylist()}
    a, b, broken = rows
    assert len(a["labels"]) == 3 and len(b["labels"]) == 5
    for row in (a, b):
        truth = current[row["video_uri"]]
        assert row["status"] == "ok" and row["error"] is None
        assert row["labels"] == truth["labels"] and row["label"] == truth["labels"][0]
        assert row["scores"] == pytest.approx(truth["scores"], rel=1e-6)
        assert row["score"] == pytest.approx(truth["scores"][0], rel=1e-6)
    assert broken["status"] == "error" and "broken.mp4" in broken["error"]
    assert broken["label"] is None and broken["score"] is None and broken["labels"] is None


def test_csv_lists_are_json_arrays(labelled, tmp_path):
    dest = tmp_path / "labels.csv"
    export_labels(str(labelled), str(dest))
    first = next(csv.reader(io.StringIO(dest.read_text().splitlines()[1])))
    labels = first[FLAT.index("labels")]
    assert labels.startswith('["') and json.loads(labels)[0] == first[FLAT.index("label")]
    # float32 scores as their shortest round-trip decimal, not float64 noise like 0.0026000000163912773
    assert all(len(str(s)) <= 14 for s in json.loads(first[FLAT.index("scores")]))


def test_status_and_min_score_filters(labelled, tmp_path):
    dest = tmp_path / "f.jsonl"
    export_labels(str(labelled), str(dest), status="ok")
    ok = read_back(dest)
    assert {_name(r["video_uri"]) for r in ok} == {"a.mp4", "b.mp4"}
    export_labels(str(labelled), str(dest), status="error")
    assert [_name(r["video_uri"]) for r in read_back(dest)] == ["broken.mp4"]

    low, high = sorted(ok, key=lambda r: r["score"])
    assert low["score"] < high["score"]
    threshold = (low["score"] + high["score"]) / 2
    # --min-score drops low-scoring labelled rows; error rows have no score and follow --status only.
    export_labels(str(labelled), str(dest), min_score=threshold)
    assert sorted(_name(r["video_uri"]) for r in read_back(dest)) == sorted([_name(high["video_uri"]), "broken.mp4"])
    export_labels(str(labelled), str(dest), min_score=threshold, status="ok")
    assert [r["video_uri"] for r in read_back(dest)] == [high["video_uri"]]
    export_labels(str(labelled), str(dest), min_score=high["score"], status="ok")  # inclusive bound
    assert len(read_back(dest)) == 1


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_windowed_table_exports_segment_columns(windowed_labels, tmp_path, ext):
    dest = tmp_path / f"w{ext}"
    result = export_labels(str(windowed_labels), str(dest))
    assert result.columns == WINDOWED
    rows = read_back(dest)
    # The video-level row (-1) first, then windows 0..2 of 2 s (the last, 1 s, is kept: >= W/2).
    assert [r["segment_index"] for r in rows] == [-1, 0, 1, 2]
    assert [(r["segment_start_s"], r["segment_end_s"]) for r in rows[1:]] == [
        (0.0, 2.0), (2.0, 4.0), (4.0, pytest.approx(5.0, abs=0.3))]
    assert all(r["status"] == "ok" and len(r["labels"]) == 5 for r in rows)


def test_s3_output_to_s3_dest(labelled, local_s3, tmp_path):
    local_s3.create_bucket("exports")
    for path in labelled.rglob("*"):
        if path.is_file():
            local_s3.upload(path, f"s3://exports/labels/{path.relative_to(labelled)}")
    export_labels("s3://exports/labels", "s3://exports/out/labels.csv")
    local = tmp_path / "labels.csv"
    export_labels(str(labelled), str(local))
    with s3_filesystem().open_input_stream("exports/out/labels.csv") as f:
        assert f.read().decode() == local.read_text()
    # No stray temp objects beside the export.
    listed = s3_filesystem().get_file_info(pafs.FileSelector("exports/out"))
    assert [i.path for i in listed] == ["exports/out/labels.csv"]


def test_cli(labelled, tmp_path):
    runner = CliRunner()
    result = runner.invoke(export_command, [str(labelled), str(tmp_path / "x.csv"), "--status", "ok"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 rows" in result.output and (tmp_path / "x.csv").exists()

    bad = runner.invoke(export_command, [str(labelled), str(tmp_path / "x.xlsx")])
    assert bad.exit_code == 2 and "'.xlsx'" in bad.output and ".csv, .jsonl, .parquet" in bad.output
    assert not (tmp_path / "x.xlsx").exists()

    empty = runner.invoke(export_command, [str(tmp_path / "nothing"), str(tmp_path / "y.csv")])
    assert empty.exit_code == 1 and "no committed label rows" in empty.output

    with pytest.raises(ExportError, match="no extension"):
        export_labels(str(labelled), str(tmp_path / "labels"))
