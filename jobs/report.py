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
import pyarrow.compute as pc

from jobs.storage import StorageError
from jobs.table import LabelTable

SUMMARY_COLUMNS = ["video_uri", "mode", "segment_index", "status", "error", "error_kind", "labels"]
READ_COLUMNS = SUMMARY_COLUMNS + ["segment_start_s", "segment_end_s", "scores", "frame_indices", "frame_timestamps",
                                  "duration_s", "width", "height", "codec", "model"]
CHART_LABELS = 30  # bars in the chart; the rest are summed in a note
THUMB = 96  # thumbnail edge in pixels (the model sees 224x224)
BAR_COLOUR = (74, 122, 181)
CLI_WORKERS = min(4, os.cpu_count() or 1)  # `inspect --html` default: decode processes for thumbnails


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
def load(output_uri: str, columns: list[str] = READ_COLUMNS) -> tuple[pa.Table, TableSummary]:
    """The current rows of OUTPUT (``columns``: SUMMARY_COLUMNS suffice for the text) and their summary."""
    label_table = LabelTable(output_uri)
    table = label_table.read_current(columns)
    if table is None or table.num_rows == 0:
        raise ReportError(f"{output_uri}: no committed label rows")
    return table, summarize(output_uri, table, label_table.read_manifests())


def summarize(output_uri: str, table: pa.Table, runs: list[dict]) -> TableSummary:
    """Counts computed in Arrow, so a table of millions of rows summarises in seconds."""
    level = _video_level(table)
    videos, windows = table.filter(level), table.filter(pc.invert(level))
    is_ok = pc.equal(videos["status"], "ok")
    top1 = pc.drop_null(pc.list_element(videos.filter(is_ok)["labels"], 0))
    failed = videos.filter(pc.invert(is_ok))
    kinds = pc.fill_null(failed["error_kind"], "unknown")
    counts = _counts(kinds)
    examples = {kind: failed["error"][pc.index(kinds, kind).as_py()].as_py() or "" for kind in counts}
    return TableSummary(output_uri, videos.num_rows, table.num_rows, _counts(videos["status"]), _counts(top1),
                        counts, examples, _counts(windows["status"]), runs)


def _video_level(table: pa.Table) -> pa.ChunkedArray:
    """The row that stands for the whole video: segment 0 of a whole-video run, -1 of a windowed one."""
    return pc.or_(pc.equal(table["mode"], "video"), pc.equal(table["segment_index"], -1))


def _counts(values) -> collections.Counter:
    return collections.Counter({row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()})


def select_videos(table: pa.Table, max_videos: int) -> tuple[list[Video], int, list[dict], int]:
    """(first max_videos labelled videos by URI, how many are labelled, first failed rows, how many failed)."""
    level = table.filter(_video_level(table)).sort_by("video_uri")
    is_ok = pc.equal(level["status"], "ok")
    ok, failed = level.filter(is_ok), level.filter(pc.invert(is_ok))
    shown = table.filter(pc.is_in(table["video_uri"], value_set=ok["video_uri"][:max_videos].combine_chunks()))
    return group_videos(shown), ok.num_rows, failed.slice(0, max_videos).to_pylist(), failed.num_rows


def group_videos(table: pa.Table) -> list[Video]:
    """One Video per video_uri, in URI order: its video-level row and its windows in order."""
    level: dict[str, dict] = {}
    windows: dict[str, list[dict]] = collections.defaultdict(list)
    for row in table.to_pylist():
        if row["mode"] == "video" or row["segment_index"] == -1:
            level[row["video_uri"]] = row
        else:
            windows[row["video_uri"]].append(row)
    return [Video(level[uri], sorted(windows[uri], key=lambda r: r["segment_index"])) for uri in sorted(level)]


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
                     f'<text x="{left - 8}" y="{y + bar_h - 4}" text-anchor="end">'
                     f'{html.escape(_clip(label, 40))}</text>'
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
table.failed{border-collapse:collapse;font-size:12px}
table.failed td,table.failed th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
"""


def render_html(table: pa.Table, summary: TableSummary, max_videos: int = 200, workers: int = 1) -> str:
    """The page for the current rows in ``table`` (READ_COLUMNS). ``workers`` > 1 decodes thumbnails
    in that many spawned processes (they re-import the caller's ``__main__``, so a script run
    from stdin must keep workers=1)."""
    shown, num_ok, failed, num_failed = select_videos(table, max_videos)
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
           f"<h2>Labelled videos ({num_ok})</h2>"]
    if num_ok > len(shown):
        out.append(f"<p class='note'>Showing the first {len(shown)} of {num_ok} labelled videos (by URI); "
                   f"{num_ok - len(shown)} left out (raise --max-videos to see more).</p>")
    for v in shown:
        out.append(_video_html(v, strips))
    out.append(f"<h2>Failed videos ({num_failed})</h2>")
    if failed:
        out.append("<table class='failed'><tr><th>video</th><th>kind</th><th>reason</th></tr>")
        out += [f"<tr><td>{esc(r['video_uri'])}</td><td>{esc(r['error_kind'] or '')}</td>"
                f"<td>{esc(r['error'] or '')}</td></tr>" for r in failed]
        out.append("</table>")
        if num_failed > len(failed):
            out.append(f"<p class='note'>{num_failed - len(failed)} more failed videos left out "
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


def write_html(output_uri: str, path: str, max_videos: int = 200, workers: int = 1) -> TableSummary:
    table, summary = load(output_uri)
    _write_text(path, render_html(table, summary, max_videos=max_videos, workers=workers))
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
@click.option("--workers", type=click.IntRange(1), default=CLI_WORKERS, show_default="up to 4, one per core",
              help="Processes decoding thumbnails in parallel.")
def inspect_command(output_uri: str, html_path: str | None, plot_path: str | None, max_videos: int, top: int,
                    workers: int) -> None:
    """Summarise the label table in OUTPUT: counts by status, frequent labels, error kinds.

    With --html, also write a page to check labels by eye; with --plot, the label chart as PNG.
    """
    try:
        # The text needs a few columns; the page also the frames' indices and the segment bounds.
        table, summary = load(output_uri, READ_COLUMNS if html_path else SUMMARY_COLUMNS)
    except (ReportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(summary, top=top))
    if plot_path:
        write_plot(summary.labels, plot_path)
        click.echo(f"chart: {plot_path}")
    if html_path:
        shown = min(max_videos, summary.status.get("ok", 0))
        click.echo(f"reading thumbnails of {shown} videos ...")
        _write_text(html_path, render_html(table, summary, max_videos=max_videos, workers=workers))
        click.echo(f"report: {html_path}")
