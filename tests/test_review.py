"""The human review loop without Label Studio: the review queue, importing answers (CSV and a
Label Studio export written by hand), human labels surviving later commits, bad input leaving
the table unchanged, `stam-label diff`, and inspect/report marking human labels. All through the
real Delta table and the `stam-label` command (tests/test_review_label_studio.py runs the round
trip with a real Label Studio and a real labelling run)."""
from __future__ import annotations

import csv
import datetime as dt
import json

import pyarrow as pa
import pytest
from click.testing import CliRunner

from jobs.cli import main
from jobs.schema import HUMAN_COLUMNS, keep_human_columns, output_schema, with_flat_columns
from jobs.table import LabelTable
from stam_core import KINETICS400_CLASSES as K

A, B, C, D = K[0], K[1], K[2], K[3]  # abseiling, air drumming, answering questions, applauding


def rows(run_id: str, specs, minute: int = 0) -> pa.Table:
    """specs: (uri, labels, scores) for ok rows, (uri, None, None) for an error row; video mode."""
    at = dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc)
    out = [{"video_uri": uri, "mode": "video", "segment_index": 0, "status": "ok" if labels else "error",
            "error": None if labels else f"{uri}: broken", "error_kind": None if labels else "corrupt",
            "labels": labels, "scores": scores, "source_version": "1:1", "model": "stam_tiny",
            "weights_sha256": "w1", "run_id": run_id, "labelled_at": at} for uri, labels, scores in specs]
    return pa.Table.from_pylist(out, schema=output_schema())


FIRST = [("/v/a.mp4", [A, B], [0.9, 0.05]),   # certain
         ("/v/b.mp4", [B, A], [0.4, 0.35]),   # uncertain, small margin
         ("/v/c.mp4", [B, C], [0.3, 0.1]),    # least certain
         ("/v/d.mp4", [C, D], [0.5, 0.1]),
         ("/v/e.mp4", None, None)]            # error row: never queued


@pytest.fixture
def out(tmp_path) -> str:
    table = LabelTable(str(tmp_path / "labels"))
    table.ensure_created(output_schema())
    table.commit(rows("20260101T000000Z-aaaaaa", FIRST), run_id="20260101T000000Z-aaaaaa", seq=1)
    return table.uri


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def current(uri: str) -> dict[str, dict]:
    table = LabelTable(uri).read_current()
    return {r["video_uri"]: r for r in table.to_pylist()}


def version(uri: str) -> int:
    return LabelTable(uri).snapshot().version()


def test_flat_label_is_the_human_label_where_there_is_one():
    table = with_flat_columns(rows("r", FIRST[:2]))
    assert table["label"].to_pylist() == [A, B] and table["label_source"].to_pylist() == ["model", "model"]
    reviewed = pa.table({"video_uri": ["/v/b.mp4"], "human_label": [D], "reviewed_by": ["ann"],
                         "reviewed_at": pa.array([dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)],
                                                 pa.timestamp("us", tz="UTC"))})
    kept = keep_human_columns(rows("r2", FIRST), reviewed).to_pylist()
    assert [r["label"] for r in kept] == [A, D, B, C, None]
    assert [r["label_source"] for r in kept] == ["model", "human", "model", "model", None]
    assert kept[1]["reviewed_by"] == "ann" and kept[1]["labels"] == [B, A]  # the model's answer stays
    assert kept[1]["score"] == pytest.approx(0.4)
    assert all(r["human_label"] is None for i, r in enumerate(kept) if i != 1)


def test_review_queue_selects_the_least_certain_ok_videos(out, tmp_path):
    queue = tmp_path / "queue.csv"
    code, text = cli("review", out, queue, "--max-score", 0.6)
    assert code == 0, text
    got = list(csv.DictReader(queue.open()))
    assert [r["video_uri"] for r in got] == ["/v/c.mp4", "/v/b.mp4", "/v/d.mp4"]  # lowest score first
    assert got[0]["label"] == B and json.loads(got[0]["labels"]) == [B, C] and float(got[0]["score"]) == 0.3
    assert got[0]["video_url"] == "file:///v/c.mp4"
    assert "3 videos to review" in text

    cli("review", out, queue, "--max-margin", 0.1)
    assert [r["video_uri"] for r in csv.DictReader(queue.open())] == ["/v/b.mp4"]  # 0.4 - 0.35
    cli("review", out, queue, "--per-class", 1)
    assert [r["video_uri"] for r in csv.DictReader(queue.open())] == ["/v/c.mp4", "/v/d.mp4", "/v/a.mp4"]
    cli("review", out, queue, "--limit", 2)
    assert [r["video_uri"] for r in csv.DictReader(queue.open())] == ["/v/c.mp4", "/v/b.mp4"]


def test_label_studio_queue_has_tasks_predictions_and_a_config(out, tmp_path):
    queue = tmp_path / "queue.json"
    code, text = cli("review", out, queue, "--limit", 1)
    assert code == 0, text
    [task] = json.loads(queue.read_text())
    assert task["data"]["video_uri"] == "/v/c.mp4" and task["data"]["video"] == "file:///v/c.mp4"
    assert task["data"]["model_labels"] == [B, C]
    assert task["predictions"][0]["result"][0]["value"]["choices"] == [B]
    config = (tmp_path / "queue.label-config.xml").read_text()
    assert config.count("<Choice ") == 400 and '<Choices name="label" toName="video"' in config


def test_review_refuses_an_unknown_format(out, tmp_path):
    code, text = cli("review", out, tmp_path / "queue.txt")
    assert code == 2 and "unknown review queue format '.txt'" in text


def test_import_csv_sets_human_columns_in_one_commit(out, tmp_path):
    answers = tmp_path / "answers.csv"
    answers.write_text(f"video_uri,label,reviewer\n/v/b.mp4,{D},ann\n/v/c.mp4,{C},\n")
    before = version(out)
    code, text = cli("import-reviews", out, answers, "--reviewer", "team")
    assert code == 0, text
    assert "imported 2 human labels" in text and version(out) == before + 1  # one transaction
    now = current(out)
    assert now["/v/b.mp4"]["label"] == D and now["/v/b.mp4"]["human_label"] == D
    assert now["/v/b.mp4"]["label_source"] == "human" and now["/v/b.mp4"]["reviewed_by"] == "ann"
    assert now["/v/b.mp4"]["labels"] == [B, A] and now["/v/b.mp4"]["score"] == pytest.approx(0.4)
    assert now["/v/c.mp4"]["reviewed_by"] == "team" and now["/v/c.mp4"]["reviewed_at"] is not None
    assert now["/v/a.mp4"]["human_label"] is None and now["/v/a.mp4"]["label"] == A

    # Reviewed videos are not queued again, unless asked.
    queue = tmp_path / "q.csv"
    cli("review", out, queue, "--max-score", 0.6)
    assert [r["video_uri"] for r in csv.DictReader(queue.open())] == ["/v/d.mp4"]
    cli("review", out, queue, "--max-score", 0.6, "--include-reviewed")
    assert len(list(csv.DictReader(queue.open()))) == 3


def test_human_labels_survive_a_relabel_commit(out, tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(f"video_uri,label,reviewer\n/v/b.mp4,{D},ann\n")
    assert cli("import-reviews", out, path)[0] == 0
    reviewed = {c: current(out)["/v/b.mp4"][c] for c in HUMAN_COLUMNS}
    # A later run relabels videos with new weights, through the commit path a run uses.
    relabel = [("/v/a.mp4", [C, A], [0.8, 0.1]), ("/v/b.mp4", [A, B], [0.6, 0.3])]
    LabelTable(out).commit(rows("20260102T000000Z-bbbbbb", relabel, minute=5), run_id="20260102T000000Z-bbbbbb",
                           seq=1)
    now = current(out)
    assert now["/v/b.mp4"]["run_id"] == "20260102T000000Z-bbbbbb" and now["/v/b.mp4"]["labels"] == [A, B]
    assert {c: now["/v/b.mp4"][c] for c in HUMAN_COLUMNS} == reviewed and reviewed["reviewed_by"] == "ann"
    assert now["/v/b.mp4"]["label"] == D and now["/v/b.mp4"]["label_source"] == "human"
    assert now["/v/a.mp4"]["label"] == C and now["/v/a.mp4"]["label_source"] == "model"


@pytest.mark.parametrize("name, body, message", [
    ("answers.csv", f"video_uri,label\n/v/b.mp4,{D}\n/v/c.mp4,not a class\n", "'not a class' is not a class name"),
    ("answers.csv", f"video_uri,label\n/v/b.mp4,{D}\n/v/zzz.mp4,{A}\n", "/v/zzz.mp4 is not in the table"),
    ("answers.csv", f"video_uri,label\n/v/b.mp4,{D}\n/v/b.mp4,{A}\n", "/v/b.mp4 has two labels"),
    ("answers.csv", "uri,class\n/v/b.mp4,x\n", "not a review CSV: no column video_uri, label"),
    ("export.json", "[{\"id\": 1, \"data\": {\"video_uri\": \"/v/b.mp4\"}, \"annotations\": [", "not a Label Studio JSON"),
    ("export.json", "{\"tasks\": []}", "expected a list of tasks"),
    ("export.json", "[{\"id\": 7, \"data\": {\"video\": \"x\"}}]", "task 7 has no data.video_uri"),
    ("answers.txt", "x", "unknown review file format '.txt'"),
])
def test_bad_review_files_change_nothing(out, tmp_path, name, body, message):
    path = tmp_path / name
    path.write_text(body)
    before, rows_before = version(out), current(out)
    code, text = cli("import-reviews", out, path)
    assert code == 1 and message in text, text
    assert version(out) == before and current(out) == rows_before


def test_skip_invalid_imports_the_rest_and_reports_the_others(out, tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(f"video_uri,label\n/v/b.mp4,{D}\n/v/c.mp4,not a class\n/v/zzz.mp4,{A}\n")
    code, text = cli("import-reviews", out, path, "--skip-invalid")
    assert code == 0, text
    assert "imported 1 human label " in text and "skipped 2" in text and "/v/zzz.mp4 is not in the table" in text
    assert current(out)["/v/b.mp4"]["label"] == D and current(out)["/v/c.mp4"]["human_label"] is None


def test_label_studio_export_takes_the_latest_answer_that_was_not_cancelled(out, tmp_path):
    def annotation(choice, at, cancelled=False, who=3):
        return {"completed_by": who, "was_cancelled": cancelled, "updated_at": at,
                "result": [{"from_name": "label", "to_name": "video", "type": "choices",
                            "value": {"choices": [choice]}}]}
    export = [{"id": 1, "data": {"video_uri": "/v/b.mp4"},
               "annotations": [annotation(A, "2026-03-01T10:00:00Z"), annotation(D, "2026-03-02T10:00:00Z"),
                               annotation(C, "2026-03-03T10:00:00Z", cancelled=True)]},
              {"id": 2, "data": {"video_uri": "/v/c.mp4"}, "annotations": []}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    code, text = cli("import-reviews", out, path)
    assert code == 0 and "imported 1 human label " in text and "1 task without an answer" in text, text
    row = current(out)["/v/b.mp4"]
    assert row["human_label"] == D and row["reviewed_by"] == "label-studio user 3"
    assert row["reviewed_at"] == dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc)


def test_diff_counts_changes_flows_and_marks_human_labels(out, tmp_path):
    first = version(out)
    path = tmp_path / "answers.csv"
    path.write_text(f"video_uri,label\n/v/b.mp4,{D}\n")
    cli("import-reviews", out, path)
    LabelTable(out).commit(rows("20260102T000000Z-bbbbbb", [("/v/a.mp4", [C, A], [0.8, 0.1]),
                                                             ("/v/f.mp4", [A], [0.5])]),
                           run_id="20260102T000000Z-bbbbbb", seq=1)
    code, text = cli("diff", out, "--from", first)
    assert code == 0, text
    assert "top-1 changed: 2 of 5 videos" in text and "(1 added, 0 removed)" in text
    assert f"/v/b.mp4: {B} -> {D} [human]" in text and f"/v/a.mp4: {A} -> {C}" in text

    code, text = cli("diff", out, "--from", "20260101T000000Z-aaaaaa", "--to", first + 1, "--json")
    got = json.loads(text)
    assert code == 0 and got["changed"] == 1 and got["flows"] == [{"from": B, "to": D, "videos": 1}]
    assert got["videos"] == [{"video_uri": "/v/b.mp4", "from": B, "to": D, "label_source": "human"}]

    later = dt.datetime.now(dt.timezone.utc).isoformat()
    page = tmp_path / "diff.html"
    code, text = cli("diff", out, "--from", first, "--to", later, "--html", page)
    assert code == 0 and "<b>2</b> changed" in page.read_text() and "class='human'" in page.read_text()

    for bad, message in (("99", "no version 99"), ("20990101T000000Z-cccccc", "no commit of run"),
                         ("yesterday", "not a table version, a run id or an ISO timestamp")):
        code, text = cli("diff", out, "--from", bad)
        assert code == 1 and message in text, text


def test_inspect_and_report_show_reviewed_videos(out, tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(f"video_uri,label,reviewer\n/v/b.mp4,{D},ann\n/v/c.mp4,{B},ann\n")
    cli("import-reviews", out, path)
    page = tmp_path / "report.html"
    code, text = cli("inspect", out, "--html", page, "--workers", 1)
    assert code == 0, text
    assert "reviewed: 2 videos have a human label (1 differ from the model's top-1)" in text
    # The labels counted are the human ones where reviewed: b.mp4 counts as D, no longer as the model's B.
    assert f"  {1:7d}  {B}\n" in text and f"  {1:7d}  {D}\n" in text
    html = page.read_text()
    assert "2 reviewed by people" in html and f"human: {D}" in html and "data-source='human'" in html


def test_s3_table_queue_presigns_and_imports(local_s3, tmp_path):
    local_s3.create_bucket("review")
    out = "s3://review/labels"
    table = LabelTable(out)
    table.ensure_created(output_schema())
    table.commit(rows("r1", [("s3://review/in/a b.mp4", [B, A], [0.4, 0.3])]), run_id="r1", seq=1)

    queue = tmp_path / "queue.csv"
    code, text = cli("review", out, queue)
    assert code == 0 and next(csv.DictReader(queue.open()))["video_url"] == "s3://review/in/a b.mp4"
    code, text = cli("review", out, queue, "--presign", 600)
    url = next(csv.DictReader(queue.open()))["video_url"]
    assert code == 0 and url.startswith(f"{local_s3.endpoint}/review/in/a%20b.mp4?") and "X-Amz-Signature=" in url
    assert "Signature" not in text  # never printed
    assert "Expires=600" in url or "X-Amz-Expires=600" in url

    answers = tmp_path / "answers.csv"
    answers.write_text(f"video_uri,label\ns3://review/in/a b.mp4,{D}\n")
    code, text = cli("import-reviews", out, answers)
    assert code == 0, text
    assert current(out)["s3://review/in/a b.mp4"]["label"] == D


def test_label_studio_push_errors_never_show_the_key(out, tmp_path, monkeypatch):
    queue = tmp_path / "queue.json"
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    code, text = cli("review", out, queue, "--to-label-studio", "http://127.0.0.1:9", "--project", 1)
    assert code == 1 and "needs the API key in LABEL_STUDIO_API_KEY" in text
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "sekrit-key-123")
    code, text = cli("review", out, queue, "--to-label-studio", "http://127.0.0.1:9", "--project", 1)
    assert code == 1 and "Label Studio http://127.0.0.1:9: GET /api/projects/1 failed" in text
    assert "sekrit" not in text
    code, text = cli("review", out, queue, "--project", 1)
    assert code == 2 and "--to-label-studio and --project go together" in text


def test_windowed_videos_are_reviewed_on_their_video_level_row(tmp_path):
    table = LabelTable(str(tmp_path / "labels"))
    table.ensure_created(output_schema())

    def windowed(run_id, top):
        t = rows(run_id, [("/v/w.mp4", [top, A], [0.4, 0.3])] * 3)
        mode = pa.array(["window=2,stride=2"] * 3)
        return t.set_column(1, "mode", mode).set_column(2, "segment_index", pa.array([0, 1, -1], pa.int32()))

    table.commit(windowed("r1", B), run_id="r1", seq=1)
    queue = tmp_path / "queue.csv"
    assert cli("review", table.uri, queue)[0] == 0
    assert [r["video_uri"] for r in csv.DictReader(queue.open())] == ["/v/w.mp4"]  # once, not per window
    answers = tmp_path / "answers.csv"
    answers.write_text(f"video_uri,label\n/v/w.mp4,{D}\n")
    assert cli("import-reviews", table.uri, answers)[0] == 0
    table.commit(windowed("r2", C), run_id="r2", seq=1)
    now = {r["segment_index"]: r for r in table.read_current().to_pylist()}
    assert now[-1]["human_label"] == D and now[-1]["label"] == D and now[-1]["run_id"] == "r2"
    assert [now[i]["label"] for i in (0, 1)] == [C, C] and now[0]["human_label"] is None
