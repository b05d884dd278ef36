"""What changed between two versions of the label table (`stam-label diff`): how many videos
changed their top-1 label (the flat ``label``: a human label where there is one), the largest
class-to-class flows, and the videos that changed; as text, JSON or an HTML page.

A version is given as a Delta version number, a run id (the table as that run's last commit
left it) or an ISO timestamp (the last version committed at or before it).
"""
from __future__ import annotations

import collections
import datetime as dt
import html
import re
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.dataset as pads

from jobs.schema import plain_schema
from jobs.storage import StorageError
from jobs.table import LabelTable
from jobs.text import plural
from jobs.tools.report.page import CSS
from jobs.tools.report.summary import video_level
from jobs.tools.review.queue import ReviewError

RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]+$")
NONE = "(none)"  # a video without a label in that version: absent, or an error row


@dataclass
class TableDiff:
    output_uri: str
    from_version: int
    to_version: int
    videos_from: int
    videos_to: int
    changed: int  # videos in both versions whose label differs
    added: int  # videos only in the newer version
    removed: int  # videos only in the older version
    flows: list[dict] = field(default_factory=list)  # {"from", "to", "videos"}, largest first
    videos: list[dict] = field(default_factory=list)  # {"video_uri", "from", "to", "label_source"}, first `limit`


def resolve_version(label_table: LabelTable, spec: str) -> int:
    """The table version a --from/--to value names (see the module's docstring)."""
    table = label_table.snapshot()
    if table is None:
        raise ReviewError(f"{label_table.uri}: no label table")
    latest = table.version()
    if spec.isdigit():
        if int(spec) > latest:
            raise ReviewError(f"{label_table.uri}: no version {spec} (the latest is {latest})")
        return int(spec)
    history = table.history()
    if RUN_ID.match(spec):
        versions = [h["version"] for h in history if h.get("stam_label.run_id") == spec]
        if not versions:
            raise ReviewError(f"{label_table.uri}: no commit of run {spec} in the table's history")
        return max(versions)
    try:
        when = dt.datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError:
        raise ReviewError(f"{spec!r} is not a table version, a run id or an ISO timestamp") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    ms = when.timestamp() * 1000
    versions = [h["version"] for h in history if h.get("timestamp", 0) <= ms]
    if not versions:
        raise ReviewError(f"{label_table.uri}: no version committed at or before {when.isoformat()}")
    return max(versions)


def read_labels(label_table: LabelTable, version: int) -> dict[str, tuple[str | None, str | None]]:
    """video_uri -> (label, label_source) of each video's own row in ``version``."""
    table = label_table.snapshot(version)
    schema = plain_schema(pa.schema(table.schema().to_arrow()))
    columns = [c for c in ("video_uri", "mode", "segment_index", "label", "label_source") if c in schema.names]
    try:
        rows = pads.dataset(label_table.data_files(version), schema=schema, format="parquet",
                            filesystem=label_table.fs).to_table(columns=columns)
    except OSError as exc:
        raise StorageError(f"{label_table.uri}: cannot read version {version} ({exc})") from exc
    rows = rows.filter(video_level(rows)) if rows.num_rows else rows
    sources = rows["label_source"].to_pylist() if "label_source" in rows.column_names else [None] * rows.num_rows
    return dict(zip(rows["video_uri"].to_pylist(), zip(rows["label"].to_pylist(), sources)))


def diff_versions(output_uri: str, from_spec: str, to_spec: str | None = None, *, limit: int = 100,
                  top_flows: int = 10) -> TableDiff:
    label_table = LabelTable(output_uri)
    old_v = resolve_version(label_table, from_spec)
    new_v = resolve_version(label_table, to_spec) if to_spec else label_table.snapshot().version()
    old, new = read_labels(label_table, old_v), read_labels(label_table, new_v)
    changed = sorted(u for u in old.keys() & new.keys() if old[u][0] != new[u][0])
    flows = collections.Counter((old[u][0] or NONE, new[u][0] or NONE) for u in changed)
    return TableDiff(
        output_uri, old_v, new_v, len(old), len(new), len(changed), len(new.keys() - old.keys()),
        len(old.keys() - new.keys()),
        flows=[{"from": a, "to": b, "videos": n} for (a, b), n in flows.most_common(top_flows)],
        videos=[{"video_uri": u, "from": old[u][0], "to": new[u][0], "label_source": new[u][1]}
                for u in changed[:limit]])


def format_diff(d: TableDiff) -> str:
    lines = [f"{d.output_uri}: version {d.from_version} -> {d.to_version}",
             f"videos: {d.videos_from} -> {d.videos_to} ({d.added} added, {d.removed} removed)",
             f"top-1 changed: {d.changed} of {plural(d.videos_from - d.removed, 'video')} in both versions"]
    if d.flows:
        lines.append("largest flows:")
        lines += [f"  {f['videos']:7d}  {f['from']} -> {f['to']}" for f in d.flows]
    if d.videos:
        lines.append(f"changed videos{f' (first {len(d.videos)})' if len(d.videos) < d.changed else ''}:")
        lines += [f"  {v['video_uri']}: {v['from'] or NONE} -> {v['to'] or NONE}"
                  + (" [human]" if v["label_source"] == "human" else "") for v in d.videos]
    return "\n".join(lines)


def diff_json(d: TableDiff) -> dict:
    return asdict(d)


def diff_html(d: TableDiff) -> str:
    """A self-contained page in the report's style."""
    esc = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>stam-label diff: {esc(d.output_uri)}</title><style>{CSS}</style></head><body>",
           (f"<h1>Label changes</h1><div class='meta'>{esc(d.output_uri)} · version {d.from_version} → "
            f"{d.to_version}</div>"),
           (f"<p>{d.videos_from} → {plural(d.videos_to, 'video')} ({d.added} added, {d.removed} removed); "
            f"<b>{d.changed}</b> changed their top-1 label.</p>")]
    if d.flows:
        out.append("<h2>Largest flows</h2><table class='flows'><tr><th>videos</th><th>from</th><th>to</th></tr>")
        out += [f"<tr><td>{f['videos']}</td><td>{esc(f['from'])}</td><td>{esc(f['to'])}</td></tr>" for f in d.flows]
        out.append("</table>")
    if d.videos:
        out.append(f"<h2>Changed videos ({len(d.videos)} of {d.changed})</h2><table class='changes'>"
                   "<tr><th>video</th><th>from</th><th>to</th></tr>")
        for v in d.videos:
            mark = " <span class='human'>human</span>" if v["label_source"] == "human" else ""
            out.append(f"<tr><td>{esc(v['video_uri'])}</td><td>{esc(v['from'] or NONE)}</td>"
                       f"<td>{esc(v['to'] or NONE)}{mark}</td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
