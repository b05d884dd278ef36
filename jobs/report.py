"""`stam-label inspect`: a summary of a label table, a static HTML report, a label-frequency chart.

The text summary counts videos by status, the most frequent top-1 labels and the error kinds.
``--html`` writes one self-contained page (no server, no network: the chart is inline SVG and
the thumbnails inline base64 JPEG) for a person checking labels by eye: the label chart, then
for each video (up to ``--max-videos``) the frames the model saw with its top-5 labels, then
the failed videos with their reasons. ``--plot`` writes the chart alone as a PNG (Pillow).

Thumbnails are the sampled frames re-read with ``stam_core.read_clip`` (same frame count, same
window bounds); the re-read indices are compared with the row's ``frame_indices`` and any
difference is stated on the page, since the pictures would then not be what the model saw.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import datetime as dt
import html
import io
import multiprocessing
import os
from dataclasses import dataclass, field

import click
import numpy as np
import pyarrow as pa

from jobs.storage import StorageError
from jobs.table import LabelTable

READ_COLUMNS = ["video_uri", "mode", "segment_index", "segment_start_s", "segment_end_s", "status", "error",
                "error_kind", "labels", "scores", "frame_indices", "frame_timestamps", "duration_s", "width",
                "height", "codec", "model", "run_id", "labelled_at"]
CHART_LABELS = 30  # bars in the chart; the rest are summed in a note
THUMB = 96  # thumbnail edge in pixels (the model sees 224x224)
BAR_COLOUR = (74, 122, 181)
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)  # decode processes for thumbnails


class ReportError(Exception):
    """Nothing to report on (empty or unreadable OUTPUT); one line for the user."""


@dataclass
class TableSummary:
    output_uri: str
    videos: int
    rows: int
    status: collections.Counter
    labels: collections.Counter  # top-1 label of each labelled video
    error_kinds: collections.Counter
    error_examples: dict[str, str]
    windows: collections.Counter  # window rows by status (windowed runs only)
    runs: list[dict] = field(default_factory=list)


@dataclass
class Video:
    """A video's video-level row and, for windowed runs, its window rows in order."""

    row: dict
    windows: list[dict]


# ---- reading -----------------------------------------------------------------------------
def load(output_uri: str) -> tuple[list[Video], TableSummary]:
    table_ = LabelTable(output_uri)
    table = table_.read_current(READ_COLUMNS)
    if table is None or table.num_rows == 0:
        raise ReportError(f"{output_uri}: no committed label rows")
    videos = group_videos(table)
    status, labels, kinds, windows = (collections.Counter() for _ in range(4))
    examples: dict[str, str] = {}
    for v in videos:
        status[v.row["status"]] += 1
        if v.row["status"] == "ok" and v.row["labels"]:
            labels[v.row["labels"][0]] += 1
        elif v.row["status"] != "ok":
            kind = v.row["error_kind"] or "unknown"
            kinds[kind] += 1
            examples.setdefault(kind, v.row["error"] or "")
        for w in v.windows:
            windows[w["status"]] += 1
    summary = TableSummary(output_uri, len(videos), table.num_rows, status, labels, kinds, examples, windows,
                           runs=table_.read_manifests())
    return videos, summary


def group_videos(table: pa.Table) -> list[Video]:
    """One Video per video_uri: the whole-video row, or segment -1 plus its windows."""
    by_uri: dict[str, dict] = {}
    for row in table.to_pylist():
        entry = by_uri.setdefault(row["video_uri"], {"row": None, "windows": []})
        if row["mode"] == "video" or row["segment_index"] == -1:
            entry["row"] = row
        else:
            entry["windows"].append(row)
    out = []
    for uri in sorted(by_uri):
        entry = by_uri[uri]
        windows = sorted(entry["windows"], key=lambda r: r["segment_index"])
        # A windowed video always has its video-level row; should one be missing (a table from
        # an older version), the first window stands in so the video is still shown.
        out.append(Video(entry["row"] or windows[0], windows))
    return out


# ---- text --------------------------------------------------------------------------------
def format_summary(s: TableSummary, top: int = 15) -> str:
    lines = [f"{s.output_uri}: {s.videos} videos, {s.rows} rows, {len(s.runs)} runs"]
    if s.runs:
        last = s.runs[-1]
        sha = (last.get("weights_sha256") or "")[:12]
        lines.append(f"latest run {last.get('run_id')}: {last.get('status')}, model {last.get('model')}, "
                     f"weights {sha}, mode {last.get('mode')}")
    lines.append("status: " + ", ".join(f"{n} {k}" for k, n in s.status.most_common()))
    if s.windows:
        lines.append("windows: " + ", ".join(f"{n} {k}" for k, n in s.windows.most_common()))
    labelled = sum(s.labels.values())
    if labelled:
        lines.append(f"most frequent top-1 labels ({len(s.labels)} distinct over {labelled} labelled videos):")
        lines += [f"  {n:7d}  {label}" for label, n in s.labels.most_common(top)]
        if len(s.labels) > top:
            lines.append(f"  ... and {len(s.labels) - top} more labels")
    if s.error_kinds:
        lines.append("error kinds:")
        lines += [f"  {n:7d}  {kind}: e.g. {s.error_examples.get(kind, '')[:160]}"
                  for kind, n in s.error_kinds.most_common()]
    return "\n".join(lines)


# ---- the chart ---------------------------------------------------------------------------
def chart_svg(labels: collections.Counter, top: int = CHART_LABELS) -> str:
    """Horizontal bars of the most frequent top-1 labels, as inline SVG."""
    items = labels.most_common(top)
    if not items:
        return '<p class="note">No labelled videos: nothing to chart.</p>'
    bar_h, gap, left, width = 18, 6, 280, 900
    span = width - left - 60
    peak = items[0][1]
    height = len(items) * (bar_h + gap) + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="label frequencies">']
    r, g, b = BAR_COLOUR
    for i, (label, n) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(1.0, span * n / peak)
        name = html.escape(label)
        parts.append(f'<g><title>{name}: {n}</title>'
                     f'<text x="{left - 8}" y="{y + bar_h - 4}" text-anchor="end">{html.escape(_clip(label, 40))}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="rgb({r},{g},{b})"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + bar_h - 4}">{n}</text></g>')
    parts.append("</svg>")
    rest = len(labels) - len(items)
    if rest > 0:
        others = sum(labels.values()) - sum(n for _, n in items)
        parts.append(f'<p class="note">and {rest} more labels ({others} videos) not drawn.</p>')
    return "".join(parts)


def write_plot(labels: collections.Counter, path: str, top: int = CHART_LABELS) -> None:
    """The label-frequency chart alone, as a PNG drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    items = labels.most_common(top)
    bar_h, gap, left, width, header = 18, 6, 300, 1000, 36
    height = header + max(1, len(items)) * (bar_h + gap) + gap
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    total = sum(labels.values())
    draw.text((10, 10), f"Top-1 label frequencies ({total} labelled videos, {len(labels)} labels)",
              fill="black", font=font)
    if not items:
        draw.text((10, header), "no labelled videos", fill="black", font=font)
    peak = items[0][1] if items else 1
    span = width - left - 70
    for i, (label, n) in enumerate(items):
        y = header + gap + i * (bar_h + gap)
        text = _clip(label, 40)
        draw.text((left - 8 - draw.textlength(text, font=font), y + 2), text, fill="black", font=font)
        w = max(1, round(span * n / peak))
        draw.rectangle([left, y, left + w, y + bar_h], fill=BAR_COLOUR)
        draw.text((left + w + 6, y + 2), str(n), fill="black", font=font)
    image.save(path, format="PNG")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---- thumbnails --------------------------------------------------------------------------
@dataclass
class Strip:
    images: list[str]  # data: URIs
    note: str | None = None  # why the pictures are missing or not what the model saw


def read_strip(row: dict, timeout: float = 60.0) -> Strip:
    """Re-read a row's sampled frames as JPEG thumbnails and check they are the labelled ones."""
    import stam_core

    indices = list(row["frame_indices"] or [])
    if not indices:
        return Strip([], "no sampled frames recorded for this row")
    windowed = row["mode"] != "video"
    start = row["segment_start_s"] if windowed else None
    end = row["segment_end_s"] if windowed else None
    try:
        clip = stam_core.read_clip(row["video_uri"], len(indices), start=start, end=end, timeout=timeout)
    except stam_core.VideoError as exc:
        return Strip([], f"thumbnails unavailable: {exc}")
    images = [_jpeg_data_uri(frame) for frame in clip.frames]
    got = [int(i) for i in clip.indices]
    note = None
    if got != [int(i) for i in indices]:
        note = (f"frame mismatch: re-reading gives frames {_short_list(got)} but the model saw "
                f"{_short_list(indices)} (the file changed since it was labelled, or decoding differs); "
                "these thumbnails are not exactly what was labelled")
    return Strip(images, note)


def _jpeg_data_uri(frame: np.ndarray) -> str:
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, dtype=np.uint8)).resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short_list(values, n: int = 8) -> str:
    values = [int(v) for v in values]
    return "[" + ", ".join(map(str, values[:n])) + (", …" if len(values) > n else "") + "]"


# ---- the page ----------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta,.note{color:#666;font-size:12px} .note.warn{color:#a33}
.chart text{font:12px system-ui,sans-serif;fill:#222}
.video{border:1px solid #e3e3e3;border-radius:6px;padding:8px 12px;margin:10px 0}
.video h3{font-size:14px;margin:0;word-break:break-all}
.row{display:flex;gap:16px;align-items:flex-start;margin-top:6px}
.strip{display:flex;flex-wrap:wrap;gap:3px;max-width:860px}
.strip img{width:96px;height:96px;display:block}
ol.top{margin:0;padding-left:20px;min-width:240px} ol.top span{color:#666;margin-left:6px}
.window-head{font-size:12px;color:#444;margin-top:8px}
table.failed{border-collapse:collapse;font-size:12px} table.failed td,table.failed th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
"""


def render_html(videos: list[Video], summary: TableSummary, max_videos: int = 200,
                workers: int = DEFAULT_WORKERS) -> str:
    ok = [v for v in videos if v.row["status"] == "ok"]
    failed = [v for v in videos if v.row["status"] != "ok"]
    shown = ok[:max_videos]
    strips = _read_strips(shown, workers)
    esc = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>stam-label report: {esc(summary.output_uri)}</title><style>{CSS}</style></head><body>",
           f"<h1>Label report</h1><div class='meta'>{esc(summary.output_uri)} · generated "
           f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}</div>",
           f"<p>{summary.videos} videos: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.status.most_common())
           + (", windows: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.windows.most_common())
              if summary.windows else "") + "</p>",
           "<h2>Top-1 label frequencies</h2>", chart_svg(summary.labels),
           f"<h2>Labelled videos ({len(ok)})</h2>"]
    if len(ok) > len(shown):
        out.append(f"<p class='note'>Showing the first {len(shown)} of {len(ok)} labelled videos (by URI); "
                   f"{len(ok) - len(shown)} left out (raise --max-videos to see more).</p>")
    for v in shown:
        out.append(_video_html(v, strips))
    out.append(f"<h2>Failed videos ({len(failed)})</h2>")
    if failed:
        listed = failed[:max_videos]
        out.append("<table class='failed'><tr><th>video</th><th>kind</th><th>reason</th></tr>")
        out += [f"<tr><td>{esc(v.row['video_uri'])}</td><td>{esc(v.row['error_kind'] or '')}</td>"
                f"<td>{esc(v.row['error'] or '')}</td></tr>" for v in listed]
        out.append("</table>")
        if len(failed) > len(listed):
            out.append(f"<p class='note'>{len(failed) - len(listed)} more failed videos left out "
                       "(raise --max-videos to list them).</p>")
    else:
        out.append("<p class='note'>None.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _read_strips(videos: list[Video], workers: int) -> dict[tuple[str, int], Strip]:
    """Thumbnails of every row shown; decoding dominates the report's time."""
    rows = []
    for v in videos:
        rows += [w for w in v.windows if w["status"] == "ok"] if v.windows else [v.row]
    if workers <= 1 or len(rows) <= 1:
        strips = [read_strip(r) for r in rows]
    else:
        # read_clip serves all threads of a process from one decode worker, so parallel
        # decoding takes processes. Spawned, not forked: this process holds pyarrow/S3 threads.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(rows)), mp_context=context) as pool:
            strips = list(pool.map(read_strip, rows, chunksize=4))
    return {(r["video_uri"], r["segment_index"]): s for r, s in zip(rows, strips)}


def _top_html(row: dict) -> str:
    items = "".join(f"<li>{html.escape(label)}<span>{score:.3f}</span></li>"
                    for label, score in zip(row["labels"] or [], row["scores"] or []))
    return f"<ol class='top'>{items}</ol>"


def _strip_html(strip: Strip | None, row: dict) -> str:
    if strip is None:
        return ""
    stamps = row.get("frame_timestamps") or []
    imgs = "".join(f"<img class='thumb' src='{src}' alt='frame {i}' title='{_stamp(stamps, i)}'>"
                   for i, src in enumerate(strip.images))
    note = f"<div class='note warn'>{html.escape(strip.note)}</div>" if strip.note else ""
    return f"<div><div class='strip'>{imgs}</div>{note}</div>"


def _stamp(stamps, i) -> str:
    return f"t = {stamps[i]:.2f} s" if i < len(stamps) and stamps[i] is not None else ""


def _video_html(v: Video, strips: dict) -> str:
    r = v.row
    esc = html.escape
    meta = []
    if r.get("duration_s") is not None:
        meta.append(f"{r['duration_s']:.1f} s")
    if r.get("width"):
        meta.append(f"{r['width']}x{r['height']}")
    if r.get("codec"):
        meta.append(esc(r["codec"]))
    if r.get("model"):
        meta.append(f"model {esc(r['model'])}")
    name = r["video_uri"].rsplit("/", 1)[-1]
    parts = [f"<section class='video'><h3 title='{esc(r['video_uri'])}'>{esc(name)}</h3>"
             f"<div class='meta'>{esc(r['video_uri'])} · {' · '.join(meta)}</div>"]
    if not v.windows:
        parts.append(f"<div class='row'>{_strip_html(strips.get((r['video_uri'], r['segment_index'])), r)}"
                     f"{_top_html(r)}</div>")
    else:
        parts.append(f"<div class='window-head'>whole video ({len(v.windows)} windows, mean of window "
                     f"probabilities):</div>{_top_html(r)}")
        for w in v.windows:
            head = (f"window {w['segment_index']}: {w['segment_start_s']:.1f}–{w['segment_end_s']:.1f} s"
                    if w["segment_start_s"] is not None else f"window {w['segment_index']}")
            if w["status"] != "ok":
                parts.append(f"<div class='window-head'>{esc(head)}</div><div class='note warn'>failed "
                             f"[{esc(w['error_kind'] or '')}]: {esc(w['error'] or '')}</div>")
                continue
            strip = strips.get((w["video_uri"], w["segment_index"]))
            parts.append(f"<div class='window-head'>{esc(head)}</div>"
                         f"<div class='row'>{_strip_html(strip, w)}{_top_html(w)}</div>")
    parts.append("</section>")
    return "".join(parts)


def write_html(output_uri: str, path: str, max_videos: int = 200, workers: int = DEFAULT_WORKERS) -> TableSummary:
    videos, summary = load(output_uri)
    _write_text(path, render_html(videos, summary, max_videos=max_videos, workers=workers))
    return summary


def _write_text(path: str, text: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)  # a browser reloading it never sees half a page


@click.command("inspect")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write a static, self-contained HTML report (chart, thumbnails, top-5 labels, failures).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the label-frequency bar chart as a PNG.")
@click.option("--max-videos", type=click.IntRange(1), default=200, show_default=True,
              help="Videos shown with thumbnails in --html (and failed videos listed); the rest are counted.")
@click.option("--top", type=click.IntRange(1), default=15, show_default=True, help="Labels listed in the summary.")
@click.option("--workers", type=click.IntRange(1), default=DEFAULT_WORKERS, show_default=True,
              help="Processes decoding thumbnails in parallel.")
def inspect_command(output_uri: str, html_path: str | None, plot_path: str | None, max_videos: int, top: int,
                    workers: int) -> None:
    """Summarise the label table in OUTPUT: counts by status, frequent labels, error kinds.

    With --html, also write a page to check labels by eye; with --plot, the label chart as PNG.
    """
    try:
        videos, summary = load(output_uri)
    except (ReportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(summary, top=top))
    if plot_path:
        write_plot(summary.labels, plot_path)
        click.echo(f"chart: {plot_path}")
    if html_path:
        shown = min(max_videos, summary.status.get("ok", 0))
        click.echo(f"reading thumbnails of {shown} videos ...")
        _write_text(html_path, render_html(videos, summary, max_videos=max_videos, workers=workers))
        click.echo(f"report: {html_path}")
