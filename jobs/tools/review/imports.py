"""Taking the annotators' answers back (`stam-label import-reviews`).

A review file is a Label Studio JSON export or a CSV ``video_uri,label[,reviewer]``. Every
answer is checked before anything is written: a label that is not a class name, a video that
is not in the table, or one video given two different labels is a problem. With problems the
import writes nothing (ReviewError listing them), unless ``skip_invalid``: then they are
reported and skipped and the rest is imported. What is imported lands in one Delta transaction
that touches only the files holding those videos (a literal ``video_uri IN (...)`` predicate)
and sets only the human columns, ``label`` and ``label_source`` of each video's own row (a
table made before these columns existed gains them first: _add_human_columns).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from jobs.runs import new_run_id
from jobs.schema import HUMAN_FIELDS, LABEL_SOURCE_FIELD, with_flat_columns
from jobs.storage import StorageError, resolve
from jobs.table import CommitError, LabelTable
from jobs.text import plural
from jobs.tools.report.summary import video_level
from jobs.tools.review.label_studio import Answer, read_label_studio_export
from jobs.tools.review.queue import ReviewError

MAX_LISTED = 20  # problems listed in a message; the rest are counted


@dataclass
class ImportResult:
    imported: int
    version: int | None  # the table version written; None when nothing was imported
    unanswered: int = 0  # tasks of the export nobody answered
    skipped: list[str] = field(default_factory=list)  # problems skipped with skip_invalid


def read_answers(path: str) -> tuple[list[Answer], int]:
    """The answers in a review file (by extension: .json Label Studio export, .csv) and how many
    tasks had none; a file that cannot be read or parsed is a ReviewError naming it."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".csv"):
        raise ReviewError(f"{path}: unknown review file format {ext or '(no extension)'!r}; "
                          "give a Label Studio JSON export (.json) or a CSV video_uri,label[,reviewer] (.csv)")
    fs, fs_path = resolve(path)
    try:
        with fs.open_input_stream(fs_path) as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: cannot read review file ({str(exc).splitlines()[0]})") from None
    if ext == ".json":
        return read_label_studio_export(text, path)
    return _read_csv(text, path), 0


def _read_csv(text: str, source: str) -> list[Answer]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("video_uri", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise ReviewError(f"{source}: not a review CSV: no column {', '.join(missing)} "
                          f"(header: {', '.join(reader.fieldnames or []) or 'none'}; want video_uri,label[,reviewer])")
    answers = []
    for row in reader:
        where = f"line {reader.line_num}"
        uri, label = (row.get("video_uri") or "").strip(), (row.get("label") or "").strip()
        if not uri or not label:
            raise ReviewError(f"{source}: {where}: empty video_uri or label")
        answers.append(Answer(uri, label, (row.get("reviewer") or "").strip() or None, None, where))
    return answers


def import_reviews(output_uri: str, path: str, class_names: list[str], *, skip_invalid: bool = False,
                   reviewer: str | None = None) -> ImportResult:
    """Check every answer in ``path`` against the table and the class names, then commit them in
    one transaction (see the module's docstring). ``reviewer`` names answers that name nobody."""
    answers, unanswered = read_answers(path)
    label_table = LabelTable(output_uri)
    snapshot = label_table.snapshot()
    if snapshot is None:
        raise ReviewError(f"{output_uri}: no label table to import reviews into")
    # Only the answered videos' rows are read (the files and row groups that can hold them).
    found = label_table.rows_of(snapshot, sorted({a.video_uri for a in answers}), ["video_uri", "mode",
                                                                                   "segment_index"])
    own = found.filter(video_level(found)) if found is not None else None
    segment = {} if own is None else dict(zip(own["video_uri"].to_pylist(), own["segment_index"].to_pylist()))
    known = set(class_names)

    problems, by_video, conflicted = [], {}, set()
    for answer in answers:
        if answer.label not in known:
            problems.append(f"{answer.where}: {answer.label!r} is not a class name ({answer.video_uri})")
        elif answer.video_uri not in segment:
            problems.append(f"{answer.where}: {answer.video_uri} is not in the table")
        elif answer.video_uri in by_video and by_video[answer.video_uri].label != answer.label:
            problems.append(f"{answer.where}: {answer.video_uri} has two labels "
                            f"({by_video[answer.video_uri].label!r} in {by_video[answer.video_uri].where})")
            conflicted.add(answer.video_uri)
        else:
            by_video[answer.video_uri] = answer
    if problems and not skip_invalid:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ReviewError(f"{path}: {len(problems)} of {plural(len(answers), 'answer')} cannot be imported; "
                          f"nothing was imported (the table is unchanged; --skip-invalid imports the rest):"
                          f"\n  {listed}{more}")
    for uri in conflicted:  # skip_invalid: a video with two answers is skipped, never one of them taken
        by_video.pop(uri)
    if not by_video:
        return ImportResult(0, None, unanswered, problems)
    now = dt.datetime.now(dt.timezone.utc)
    reviews = pa.table({
        "video_uri": pa.array(list(by_video), pa.string()),
        "segment_index": pa.array([segment[u] for u in by_video], pa.int32()),
        "human_label": pa.array([a.label for a in by_video.values()], pa.string()),
        "reviewed_by": pa.array([a.reviewer or reviewer for a in by_video.values()], pa.string()),
        "reviewed_at": pa.array([a.reviewed_at or now for a in by_video.values()], HUMAN_FIELDS[2].type),
    })
    _add_human_columns(label_table)
    run_id = f"{new_run_id()}-reviews"
    try:
        result = label_table.rewrite(lambda table: _reviewed_rows(label_table, table, reviews), run_id=run_id, seq=1)
    except CommitError as exc:
        raise StorageError(f"{label_table.uri}: cannot commit the reviews ({exc})") from exc
    return ImportResult(reviews.num_rows, result.version, unanswered, problems)


def _reviewed_rows(label_table: LabelTable, table, reviews: pa.Table) -> pa.Table:
    """The reviewed videos' current rows (every segment: a commit replaces whole videos) with the
    answers set on each video's own row, read from ``table`` (the snapshot the commit goes against)."""
    rows = label_table.rows_of(table, reviews["video_uri"])
    if rows is None:
        raise ReviewError(f"{label_table.uri}: the reviewed videos left the table while importing; nothing imported")
    key = pc.binary_join_element_wise(rows["video_uri"], pc.cast(rows["segment_index"], pa.string()), "\x00")
    answer_key = pc.binary_join_element_wise(reviews["video_uri"], pc.cast(reviews["segment_index"], pa.string()),
                                             "\x00")
    at = pc.index_in(key, value_set=answer_key)
    for column in HUMAN_FIELDS:
        values = pc.if_else(pc.is_valid(at), reviews[column.name].take(at), rows[column.name].cast(column.type))
        rows = rows.set_column(rows.schema.get_field_index(column.name), column, values)
    return with_flat_columns(rows)


def _add_human_columns(label_table: LabelTable) -> None:
    """A table made before the review columns gains them first, in a commit of its own that
    changes no data (older tables; new ones are created with them)."""
    from deltalake import Schema

    table = label_table.snapshot()
    names = set(pa.schema(table.schema().to_arrow()).names)
    missing = [f for f in (*HUMAN_FIELDS, LABEL_SOURCE_FIELD) if f.name not in names]
    if missing:
        table.alter.add_columns(list(Schema.from_arrow(pa.schema(missing)).fields))
