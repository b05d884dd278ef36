"""The review queue (`stam-label review`): which videos a person should look at, written as
Label Studio tasks (JSON, with its labelling config beside it) or as CSV.

Only ``ok`` video-level rows are candidates, never one already reviewed unless asked. The
least certain come first: lowest top-1 score, then lowest margin (top-1 minus top-2).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import pyarrow as pa
import pyarrow.compute as pc

from jobs.storage import StorageError, is_s3, put_bytes, resolve
from jobs.table import LabelTable
from jobs.tools.report.links import Presigner, video_href
from jobs.tools.report.summary import video_level

QUEUE_FORMATS = (".json", ".csv")
# The names the labelling config gives its tags: the import reads the answers by them.
LS_VIDEO, LS_CHOICES = "video", "label"
READ_COLUMNS = ["video_uri", "mode", "segment_index", "status", "labels", "scores", "model", "human_label"]


class ReviewError(Exception):
    """A review command cannot do what was asked (bad input, nothing to do); one line or a list for the user."""


@dataclass(frozen=True)
class Selection:
    max_score: float | None = None  # top-1 score below this
    max_margin: float | None = None  # top-1 minus top-2 below this
    per_class: int | None = None  # at most this many per predicted class, least certain first
    limit: int | None = None
    include_reviewed: bool = False


def queue_format(dest: str, fmt: str | None = None) -> str:
    """``.json`` or ``.csv``: ``fmt`` if given, else DEST's extension; ReviewError for any other."""
    ext = "." + fmt.lstrip(".").lower() if fmt else os.path.splitext(dest.rstrip("/"))[1].lower()
    if ext not in QUEUE_FORMATS:
        raise ReviewError(f"{dest}: unknown review queue format {ext or '(no extension)'!r}; "
                          f"use a name ending in .json (Label Studio tasks) or .csv, or --format")
    return ext


def select_for_review(output_uri: str, selection: Selection) -> pa.Table:
    """The videos to review, least certain first: video_uri, labels, scores, score, margin, model."""
    table = LabelTable(output_uri).read_current(READ_COLUMNS)
    if table is None or table.num_rows == 0:
        raise ReviewError(f"{output_uri}: no committed label rows to review")
    rows = table.filter(pc.and_(video_level(table), pc.equal(table["status"], "ok")))
    if not selection.include_reviewed and "human_label" in rows.column_names:
        rows = rows.filter(pc.is_null(rows["human_label"]))
    rows = rows.filter(pc.fill_null(pc.greater(pc.list_value_length(rows["labels"]), 0), False))
    score = pc.list_element(rows["scores"], 0)
    has_second = pc.greater(pc.list_value_length(rows["scores"]), 1)
    # A top-1 alone (top_k 1) has margin = its score: no runner-up.
    padded = pc.if_else(has_second, rows["scores"], pa.scalar([0.0, 0.0], rows["scores"].type))
    second = pc.list_element(padded, 1)
    rows = rows.append_column("score", score).append_column("margin", pc.subtract(score, second))
    rows = rows.append_column("label", pc.list_element(rows["labels"], 0))
    if selection.max_score is not None:
        rows = rows.filter(pc.less(rows["score"], pa.scalar(selection.max_score, pa.float32())))
    if selection.max_margin is not None:
        rows = rows.filter(pc.less(rows["margin"], pa.scalar(selection.max_margin, pa.float32())))
    rows = rows.sort_by([("score", "ascending"), ("margin", "ascending"), ("video_uri", "ascending")])
    if selection.per_class is not None:
        seen: dict[str, int] = {}
        keep = []
        for label in rows["label"].to_pylist():
            seen[label] = seen.get(label, 0) + 1
            keep.append(seen[label] <= selection.per_class)
        rows = rows.filter(pa.array(keep, pa.bool_()))
    if selection.limit is not None:
        rows = rows.slice(0, selection.limit)
    return rows.select(["video_uri", "label", "score", "margin", "labels", "scores", "model"])


def video_url(uri: str, presign: Presigner | None = None) -> str:
    """Where an annotator opens the video: file:// for a local path, a presigned https URL for an
    s3:// object when ``presign`` is given, else the URI itself (s3://, https://, file://)."""
    if is_s3(uri):
        return presign(uri) if presign else uri
    return video_href(uri) or uri


def label_config(class_names: list[str]) -> str:
    """A Label Studio labelling config: the video, the model's top-k as text, one choice per class."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in class_names)
    return (f'<View>\n  <Video name="{LS_VIDEO}" value="$video"/>\n  <Header value="Model: $model_topk"/>\n'
            f'  <Choices name="{LS_CHOICES}" toName="{LS_VIDEO}" choice="single" showInline="false">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def label_studio_tasks(rows: pa.Table, presign: Presigner | None = None) -> list[dict]:
    """One task per video: its URL, its URI (the import's key) and the model's top-k, with the
    model's top-1 as a pre-annotation (a prediction the annotator accepts or corrects)."""
    tasks = []
    for row in rows.to_pylist():
        topk = ", ".join(f"{name} {score:.3f}" for name, score in zip(row["labels"], row["scores"]))
        tasks.append({
            "data": {"video": video_url(row["video_uri"], presign), "video_uri": row["video_uri"],
                     "model_labels": row["labels"], "model_scores": [round(s, 6) for s in row["scores"]],
                     "model_topk": topk},
            "predictions": [{"model_version": row["model"] or "stam", "score": round(row["score"], 6),
                             "result": [{"from_name": LS_CHOICES, "to_name": LS_VIDEO, "type": "choices",
                                         "value": {"choices": [row["label"]]}}]}],
        })
    return tasks


def config_path(dest: str) -> str:
    """The labelling config written beside a .json queue: queue.json -> queue.label-config.xml."""
    return os.path.splitext(dest)[0] + ".label-config.xml"


def write_queue(rows: pa.Table, dest: str, fmt: str, class_names: list[str],
                presign: Presigner | None = None) -> list[str]:
    """Write the queue (and, for Label Studio, its labelling config); returns the files written."""
    if fmt == ".json":
        tasks = json.dumps(label_studio_tasks(rows, presign), indent=1, ensure_ascii=False).encode()
        _write(dest, tasks)
        _write(config_path(dest), label_config(class_names).encode())
        return [dest, config_path(dest)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["video_uri", "label", "score", "labels", "video_url"])
    for row in rows.to_pylist():
        writer.writerow([row["video_uri"], row["label"], f"{row['score']:.6g}",
                         json.dumps(row["labels"], ensure_ascii=False), video_url(row["video_uri"], presign)])
    _write(dest, text.getvalue().encode())
    return [dest]


def _write(dest: str, data: bytes) -> None:
    fs, path = resolve(dest)
    try:
        put_bytes(fs, path, data)
    except OSError as exc:
        raise StorageError(f"{dest}: cannot write ({str(exc).splitlines()[0]})") from exc
