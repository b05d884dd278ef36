"""What a label table holds: its current rows (``load``), their counts (``TableSummary``), the
videos a page shows (``select_videos``) and the text summary (``format_summary``)."""
from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from jobs.runs import read_run_records
from jobs.segments import video_row_index
from jobs.table import LabelTable
from jobs.text import plural

SUMMARY_COLUMNS = ["video_uri", "mode", "segment_index", "status", "error", "error_kind", "labels", "human_label"]
READ_COLUMNS = SUMMARY_COLUMNS + ["segment_start_s", "segment_end_s", "scores", "frame_indices", "frame_timestamps",
                                  "duration_s", "width", "height", "codec", "model", "reviewed_by", "reviewed_at"]


class ReportError(Exception):
    """Nothing to report on (empty or unreadable OUTPUT); one line for the user."""


@dataclass
class TableSummary:
    output_uri: str
    videos: int
    rows: int
    status: collections.Counter
    labels: collections.Counter  # label of each labelled video: the human one where reviewed, else the model's top-1
    error_kinds: collections.Counter
    error_examples: dict[str, str]
    windows: collections.Counter  # window rows by status (windowed runs only)
    runs: list[dict] = field(default_factory=list)
    reviewed: int = 0  # videos with a human label
    overridden: int = 0  # ... of which the human label differs from the model's top-1


@dataclass
class Video:
    """A video's video-level row and, for windowed runs, its window rows in order."""

    row: dict
    windows: list[dict]


def load(output_uri: str, columns: list[str] = READ_COLUMNS) -> tuple[pa.Table, TableSummary]:
    """The current rows of OUTPUT (``columns``: SUMMARY_COLUMNS suffice for the text) and their summary."""
    label_table = LabelTable(output_uri)
    table = label_table.read_current(columns)
    if table is None or table.num_rows == 0:
        raise ReportError(f"{output_uri}: no committed label rows")
    return table, summarize(output_uri, table, read_run_records(label_table))


def summarize(output_uri: str, table: pa.Table, runs: list[dict]) -> TableSummary:
    """Counts computed in Arrow, so a table of millions of rows summarises in seconds."""
    level = video_level(table)
    videos, windows = table.filter(level), table.filter(pc.invert(level))
    is_ok = pc.equal(videos["status"], "ok")
    ok = videos.filter(is_ok)
    model_top1 = pc.list_element(ok["labels"], 0)
    human = ok["human_label"] if "human_label" in ok.column_names else pa.nulls(ok.num_rows, pa.string())
    top1 = pc.drop_null(pc.coalesce(human, model_top1))
    reviewed = videos["human_label"] if "human_label" in videos.column_names else pa.nulls(0, pa.string())
    overridden = pc.sum(pc.fill_null(pc.not_equal(human, model_top1), False).cast(pa.int64())).as_py() or 0
    failed = videos.filter(pc.invert(is_ok))
    kinds = pc.fill_null(failed["error_kind"], "unknown")
    counts = _counts(kinds)
    examples = {kind: failed["error"][pc.index(kinds, kind).as_py()].as_py() or "" for kind in counts}
    return TableSummary(output_uri, videos.num_rows, table.num_rows, _counts(videos["status"]), _counts(top1),
                        counts, examples, _counts(windows["status"]), runs,
                        reviewed=len(reviewed) - reviewed.null_count, overridden=overridden)


def video_level(table: pa.Table):
    """Which rows stand for their whole video: segment_index == segments.video_row_index(mode),
    tested once per mode present (a handful), so the rule stays in one place."""
    masks = [pc.and_(pc.equal(table["mode"], mode), pc.equal(table["segment_index"], video_row_index(mode)))
             for mode in pc.unique(table["mode"]).to_pylist()]
    return functools.reduce(pc.or_, masks) if masks else pa.array([], pa.bool_())


def _counts(values) -> collections.Counter:
    return collections.Counter({row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()})


def select_videos(table: pa.Table, max_videos: int) -> tuple[list[Video], int, list[dict], int]:
    """(first max_videos labelled videos by URI, how many are labelled, first failed rows, how many failed)."""
    level = table.filter(video_level(table)).sort_by("video_uri")
    is_ok = pc.equal(level["status"], "ok")
    ok, failed = level.filter(is_ok), level.filter(pc.invert(is_ok))
    shown = table.filter(pc.is_in(table["video_uri"], value_set=ok["video_uri"][:max_videos].combine_chunks()))
    return group_videos(shown), ok.num_rows, failed.slice(0, max_videos).to_pylist(), failed.num_rows


def group_videos(table: pa.Table) -> list[Video]:
    """One Video per video_uri, in URI order: its video-level row and its windows in order."""
    level: dict[str, dict] = {}
    windows: dict[str, list[dict]] = collections.defaultdict(list)
    for row in table.to_pylist():
        if row["segment_index"] == video_row_index(row["mode"]):
            level[row["video_uri"]] = row
        else:
            windows[row["video_uri"]].append(row)
    return [Video(level[uri], sorted(windows[uri], key=lambda r: r["segment_index"])) for uri in sorted(level)]


def format_summary(s: TableSummary, top: int = 15) -> str:
    lines = [f"{s.output_uri}: {plural(s.videos, 'video')}, {plural(s.rows, 'row')}, {plural(len(s.runs), 'run')}"]
    if s.runs:
        last = s.runs[-1]
        sha = (last.get("weights_sha256") or "")[:12]
        lines.append(f"latest run {last.get('run_id')}: {last.get('status')}, model {last.get('model')}, "
                     f"weights {sha}, mode {last.get('mode')}")
        cost = run_cost(last)
        if cost:
            lines.append("  " + cost)
    lines.append("status: " + ", ".join(f"{n} {k}" for k, n in s.status.most_common()))
    if s.windows:
        lines.append("windows: " + ", ".join(f"{n} {k}" for k, n in s.windows.most_common()))
    if s.reviewed:
        lines.append(f"reviewed: {plural(s.reviewed, 'video')} {'has' if s.reviewed == 1 else 'have'} a human label ({s.overridden} differ from the model's top-1)")
    labelled = sum(s.labels.values())
    if labelled:
        human = ", a human label where reviewed" if s.reviewed else ""
        lines.append(f"most frequent top-1 labels ({len(s.labels)} distinct over {labelled} labelled videos{human}):")
        lines += [f"  {n:7d}  {label}" for label, n in s.labels.most_common(top)]
        if len(s.labels) > top:
            lines.append(f"  ... and {len(s.labels) - top} more labels")
    if s.error_kinds:
        lines.append("error kinds:")
        lines += [f"  {n:7d}  {kind}: e.g. {s.error_examples.get(kind, '')[:160]}"
                  for kind, n in s.error_kinds.most_common()]
    return "\n".join(lines)


def run_cost(run: dict) -> str:
    """A run's timings and what its commits rewrote, from its record ('' when it has none)."""
    timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
    parts = [f"{name} {timings[key]:.1f} s" for key, name in (("plan_s", "planning"), ("commit_s", "commits"),
                                                              ("wall_s", "wall"))
             if isinstance(timings.get(key), (int, float))]
    if isinstance(counts.get("commits"), int):
        parts.append(f"{counts['commits']} commit{'s' if counts['commits'] != 1 else ''}")
    if isinstance(counts.get("rows_rewritten"), int):
        parts.append(f"{counts['rows_rewritten']} existing rows rewritten")
    return ", ".join(parts)
