"""`stam-label inspect`: a summary of a label table, a static HTML report, a label-frequency chart.

The text summary counts videos by status, the most frequent top-1 labels, the error kinds and,
where the run records have them, what labelling cost per video and per hour of footage.
``--html`` writes one self-contained page (no server, no network: the chart is an inline PNG,
the thumbnails inline base64 JPEG, the sorting and filtering inline JavaScript) for a person
checking labels by eye: the label chart, then one card per video (up to ``--max-videos``
labelled and as many failed) with the frames the model saw, its top-5 labels and a link to the
video. Cards are sorted and filtered by label, score and status in the page; rows whose top-1
score is under ``--low-confidence`` are highlighted. The page state lives in the URL fragment
(``report.html#status=error&sort=score``), so a filtered view can be bookmarked or shared.
``--plot`` writes the chart alone as a PNG (matplotlib, Agg backend). docs/report.md has more.

Thumbnails are the sampled frames re-read with ``stam_core.read_clip`` (same frame count, same
window bounds); the re-read indices are compared with the row's ``frame_indices`` and any
difference is stated on the page, since the pictures would then not be what the model saw.
"""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import contextlib
import datetime as dt
import html
import io
import logging
import multiprocessing
import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.segments import VIDEO_LEVEL
from jobs.storage import StorageError
from jobs.table import LabelTable

SUMMARY_COLUMNS = ["video_uri", "mode", "segment_index", "status", "error", "error_kind", "labels"]
READ_COLUMNS = SUMMARY_COLUMNS + ["segment_start_s", "segment_end_s", "scores", "frame_indices", "frame_timestamps",
                                  "duration_s", "width", "height", "codec", "model"]
CHART_LABELS = 30  # bars in the chart; the rest are summed in a note
THUMB = 96  # thumbnail edge in pixels (the model sees 224x224)
BAR_COLOUR = (74, 122, 181)
CHART_DPI = 100
CLI_WORKERS = min(4, os.cpu_count() or 1)  # `inspect --html` default: decode processes for thumbnails
LOW_CONFIDENCE = 0.3  # default --low-confidence: top-1 probabilities under it are highlighted
PRESIGN_EXPIRES = 24 * 3600  # default --presign-expires, seconds
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days


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
    """The row that stands for the whole video: segment 0 of a whole-video run, VIDEO_LEVEL of a windowed one."""
    return pc.or_(pc.equal(table["mode"], "video"), pc.equal(table["segment_index"], VIDEO_LEVEL))


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
        if row["mode"] == "video" or row["segment_index"] == VIDEO_LEVEL:
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


# ---- cost ---------------------------------------------------------------------------------
COST_METRICS = (("wall_s", "wall time"), ("decode_cpu_s", "decode CPU"), ("model_s", "model"))


@dataclass
class CostLine:
    name: str  # "wall time", "decode CPU", "model"
    seconds: float  # summed over the runs that recorded it
    videos: int  # videos those runs labelled (ok or error)
    footage_s: float | None  # footage of the runs that recorded both this metric and footage_s
    footage_seconds: float | None  # the metric summed over those same runs

    @property
    def per_video(self) -> float:
        return self.seconds / self.videos

    @property
    def per_footage_hour(self) -> float | None:
        if not self.footage_s or self.footage_seconds is None:
            return None
        return self.footage_seconds / (self.footage_s / 3600.0)


def run_costs(runs: list[dict]) -> list[CostLine]:
    """What labelling cost, from the run records' ``totals`` (``wall_s``, ``decode_cpu_s``, ``model_s``,
    ``footage_s``, optionally ``videos``); a run without ``totals`` counts its ``elapsed_s`` as wall
    time. Each metric is summed over the runs that recorded it and divided by the videos of those
    same runs (and, per hour of footage, by the footage of the runs that recorded both), so runs
    recorded by older versions neither inflate nor dilute the figures. Runs that labelled nothing
    are left out."""
    lines = []
    for key, name in COST_METRICS:
        seconds = videos = 0.0
        footage = footage_seconds = 0.0
        counted = with_footage = 0
        for run in runs:
            totals = run.get("totals") if isinstance(run.get("totals"), dict) else {}
            value = _number(totals.get(key))
            if value is None and key == "wall_s":
                value = _number(run.get("elapsed_s"))
            n = _run_videos(run, totals)
            if value is None or not n:
                continue
            seconds, videos, counted = seconds + value, videos + n, counted + 1
            run_footage = _number(totals.get("footage_s"))
            if run_footage:
                footage, footage_seconds = footage + run_footage, footage_seconds + value
                with_footage += 1
        if counted:
            lines.append(CostLine(name, seconds, int(videos), footage if with_footage else None,
                                  footage_seconds if with_footage else None))
    return lines


def _run_videos(run: dict, totals: dict) -> int:
    n = _number(totals.get("videos"))
    if n is None:
        counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
        n = (_number(counts.get("ok")) or 0) + (_number(counts.get("error")) or 0)
    return int(n)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def format_costs(runs: list[dict], hourly_price: float | None = None) -> list[str]:
    """Text lines for the cost of labelling (see run_costs); ``hourly_price`` (currency units per
    hour of the cluster) turns wall time into money."""
    lines = run_costs(runs)
    if not lines:
        return ["cost: not recorded in the run records (no totals or elapsed time)"]
    out = ["cost (per video labelled; per hour of footage where the runs recorded footage_s):"]
    for c in lines:
        hour = c.per_footage_hour
        per_hour = f"{_duration(hour)} per footage hour" if hour is not None else "footage not recorded"
        out.append(f"  {c.name:<11} {_duration(c.per_video)} per video  {per_hour}  "
                   f"({_duration(c.seconds)} over {c.videos} videos)")
    wall = next((c for c in lines if c.name == "wall time"), None)
    if hourly_price is not None and wall is not None:
        money = hourly_price * wall.per_video / 3600.0
        text = f"  price       {money:.6f} per video at {hourly_price:g} per cluster hour"
        if wall.per_footage_hour is not None:
            text += f", {hourly_price * wall.per_footage_hour / 3600.0:.4f} per footage hour"
        out.append(text)
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 0.1 else f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ---- the chart ---------------------------------------------------------------------------
def label_figure(labels: collections.Counter, top: int = CHART_LABELS):
    """Horizontal bars of the most frequent top-1 labels (a matplotlib Figure on the Agg canvas).

    Built without pyplot: nothing global changes (the caller's backend stays as it was) and the
    figure is freed with its last reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    items = labels.most_common(top)
    total = sum(labels.values())
    fig = Figure(figsize=(10, 1.6 + 0.32 * max(1, len(items))), dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(f"Top-1 label frequencies ({total} labelled videos, {len(labels)} labels)")
    ax.set_xlabel("videos (top-1 label)")
    ax.set_ylabel("label")
    if items:
        positions = list(range(len(items)))
        bars = ax.barh(positions, [n for _, n in items], height=0.7, color=_hex(BAR_COLOUR), linewidth=0)
        ax.set_yticks(positions, [_clip(label, 40) for label, _ in items])
        ax.invert_yaxis()  # most frequent on top
        ax.bar_label(bars, padding=3)
        ax.set_xlim(0, items[0][1] * 1.12)  # room for the counts
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
    else:
        ax.set_yticks([])
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no labelled videos", transform=ax.transAxes, ha="center", va="center")
    rest = len(labels) - len(items)
    if rest > 0:
        others = total - sum(n for _, n in items)
        ax.set_xlabel(f"videos (top-1 label); {rest} more labels ({others} videos) not drawn")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def plot_png(labels: collections.Counter, top: int = CHART_LABELS) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: the PNG carries the chart only.
    label_figure(labels, top).savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_plot(labels: collections.Counter, path: str, top: int = CHART_LABELS) -> None:
    """The label-frequency chart alone, as a PNG."""
    _write_bytes(path, plot_png(labels, top))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


# ---- links to the videos -----------------------------------------------------------------
Presigner = Callable[[str], str]


def s3_presigner(expires_s: int = PRESIGN_EXPIRES) -> Presigner:
    """A function giving a presigned GET URL for an s3:// URI, valid ``expires_s`` seconds.

    Signing is local (no request is made); it uses the standard AWS configuration and
    ``AWS_ENDPOINT_URL(_S3)`` like the rest of the tool. The URLs carry a signature, so they are
    never logged: botocore's debug log (which prints signatures) is held at WARNING while signing.
    """
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    with _quiet_botocore():
        client = boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))

    def presign(uri: str) -> str:
        bucket, _, key = uri[len("s3://"):].partition("/")
        with _quiet_botocore():
            return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                 ExpiresIn=expires_s)

    return presign


@contextlib.contextmanager
def _quiet_botocore():
    loggers = [logging.getLogger(name) for name in ("botocore", "boto3", "urllib3")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def video_href(uri: str, presign: Presigner | None = None) -> str | None:
    """Where a card's link points: a percent-encoded file:// URI for a local video, a presigned
    https URL for an s3:// one when ``presign`` is given, else None (the URI is shown as text)."""
    if uri.startswith("s3://"):
        return presign(uri) if presign else None
    if "://" in uri:
        return None
    return pathlib.Path(os.path.abspath(uri)).as_uri()


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
img.chart{max-width:100%;height:auto;display:block}
.controls{position:sticky;top:0;z-index:1;background:#f6f7f9;border:1px solid #e3e3e3;border-radius:6px;
 padding:8px 12px;display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;font-size:13px}
.controls input[type=number]{width:5.5em} .controls input[type=search]{width:16em}
#shown-count{font-weight:600;margin-left:auto}
.video{border:1px solid #e3e3e3;border-radius:6px;padding:8px 12px;margin:10px 0}
.video[hidden]{display:none}
.video h3{font-size:14px;margin:0;word-break:break-all}
.video.failed{border-color:#e8c4c4;background:#fdf7f7}
.low{background:#fff4d6;box-shadow:inset 4px 0 0 #e0a000}
.video.low{border-color:#e0a000}
.badge{display:none;font-size:11px;font-weight:600;color:#8a5a00;background:#ffe3a3;border-radius:3px;
 padding:0 5px;margin-left:8px;vertical-align:middle}
.low>.badge,.low>h3>.badge,.low>.window-head>.badge{display:inline}
.status{font-size:11px;border-radius:3px;padding:0 5px;margin-left:8px;background:#e6efe6;color:#285428}
.failed .status{background:#f3d6d6;color:#7a1f1f}
a.open{font-size:12px;margin-left:8px}
.row{display:flex;gap:16px;align-items:flex-start;margin-top:6px}
.strip{display:flex;flex-wrap:wrap;gap:3px;max-width:860px}
.strip img{width:96px;height:96px;display:block}
ol.top{margin:0;padding-left:20px;min-width:240px} ol.top span{color:#666;margin-left:6px}
.window{padding:2px 0 2px 8px;margin-top:4px} .window-head{font-size:12px;color:#444;margin-top:4px}
"""

# Sorting and filtering in the page. The state is kept in the URL fragment
# (#label=..&any=1&status=..&min=..&max=..&low=1&threshold=..&sort=..), read on load and on
# hashchange and rewritten (replaceState: no history entries) on every change.
SCRIPT = r"""
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  var box = $("videos");
  if (!box) return;
  var cards = Array.prototype.slice.call(box.querySelectorAll("section.video"));
  var c = {label: $("f-label"), any: $("f-any"), status: $("f-status"), min: $("f-min"), max: $("f-max"),
           low: $("f-low"), threshold: $("f-threshold"), sort: $("f-sort")};
  var defaultThreshold = c.threshold.value;
  function num(v) { var x = parseFloat(v); return isNaN(x) ? null : x; }
  function score(el) { return num(el.getAttribute("data-score")); }
  function labelsOf(card) {
    var all = card.getAttribute("data-labels");
    return all ? all.split("\n") : [];
  }
  function highlight(threshold) {
    var scored = document.querySelectorAll("[data-score]");
    for (var i = 0; i < scored.length; i++) {
      var s = score(scored[i]);
      scored[i].classList.toggle("low", threshold !== null && s !== null && s < threshold);
    }
    $("threshold-shown").textContent = threshold === null ? "none" : threshold.toFixed(2);
  }
  function keep(card, f) {
    var s = score(card);
    if (f.status && card.getAttribute("data-status") !== f.status) return false;
    if (f.label) {
      var labels = labelsOf(card), wanted = f.label.toLowerCase();
      if (!f.any) labels = labels.slice(0, 1);
      if (!labels.some(function (l) { return l.toLowerCase().indexOf(wanted) !== -1; })) return false;
    }
    if (f.min !== null && (s === null || s < f.min)) return false;
    if (f.max !== null && (s === null || s > f.max)) return false;
    if (f.low && !card.classList.contains("low")) return false;
    return true;
  }
  function compare(how) {
    function byUri(a, b) {
      var x = a.getAttribute("data-uri"), y = b.getAttribute("data-uri");
      return x < y ? -1 : x > y ? 1 : 0;
    }
    function byScore(sign) {
      return function (a, b) {
        var x = score(a), y = score(b);
        if (x === null || y === null) return (x === null) - (y === null) || byUri(a, b);  // unscored last
        return sign * (x - y) || byUri(a, b);
      };
    }
    function byAttr(name) {
      return function (a, b) {
        var x = (a.getAttribute(name) || "\uffff").toLowerCase(), y = (b.getAttribute(name) || "\uffff").toLowerCase();
        return x < y ? -1 : x > y ? 1 : byUri(a, b);
      };
    }
    return {"score": byScore(-1), "score-asc": byScore(1), "label": byAttr("data-label"),
            "status": byAttr("data-status")}[how] || byUri;
  }
  function state() {
    return {label: c.label.value.trim(), any: c.any.checked, status: c.status.value, min: num(c.min.value),
            max: num(c.max.value), low: c.low.checked, threshold: num(c.threshold.value), sort: c.sort.value};
  }
  function apply() {
    var f = state(), shown = 0;
    highlight(f.threshold);
    cards.sort(compare(f.sort));
    cards.forEach(function (card) {
      var on = keep(card, f);
      card.hidden = !on;
      shown += on ? 1 : 0;
      box.appendChild(card);
    });
    $("shown-count").textContent = shown + " of " + cards.length + " shown";
    box.setAttribute("data-shown", String(shown));
    var p = new URLSearchParams();
    if (f.label) p.set("label", f.label);
    if (f.any) p.set("any", "1");
    if (f.status) p.set("status", f.status);
    if (f.min !== null) p.set("min", String(f.min));
    if (f.max !== null) p.set("max", String(f.max));
    if (f.low) p.set("low", "1");
    if (c.threshold.value !== defaultThreshold) p.set("threshold", c.threshold.value);
    if (f.sort !== "uri") p.set("sort", f.sort);
    var hash = p.toString();
    try { history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search); } catch (e) {}
  }
  function load() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    c.label.value = p.get("label") || "";
    c.any.checked = p.get("any") === "1";
    c.status.value = p.get("status") || "";
    if (c.status.value !== (p.get("status") || "")) c.status.value = "";  // a status not in this table
    c.min.value = p.get("min") || "";
    c.max.value = p.get("max") || "";
    c.low.checked = p.get("low") === "1";
    c.threshold.value = p.get("threshold") || defaultThreshold;
    c.sort.value = p.get("sort") || "uri";
    if (!c.sort.value) c.sort.value = "uri";
  }
  Object.keys(c).forEach(function (k) {
    c[k].addEventListener("input", apply);
    c[k].addEventListener("change", apply);
  });
  $("f-reset").addEventListener("click", function () { location.hash = ""; load(); apply(); });
  window.addEventListener("hashchange", function () { load(); apply(); });
  load();
  apply();
  document.body.setAttribute("data-ready", "1");
})();
"""


def render_html(table: pa.Table, summary: TableSummary, max_videos: int = 200, workers: int = 1,
                low_confidence: float = LOW_CONFIDENCE, presign: Presigner | None = None,
                presign_expires: int | None = None, hourly_price: float | None = None) -> str:
    """The page for the current rows in ``table`` (READ_COLUMNS). ``workers`` > 1 decodes thumbnails
    in that many spawned processes (they re-import the caller's ``__main__``, so a script run
    from stdin must keep workers=1). ``presign`` (see s3_presigner) links s3:// videos;
    ``presign_expires`` is only shown on the page."""
    shown, num_ok, failed, num_failed = select_videos(table, max_videos)
    strips = _read_strips(shown, workers)
    esc = html.escape
    now = dt.datetime.now(dt.timezone.utc)
    chart = base64.b64encode(plot_png(summary.labels)).decode("ascii")
    top_items = summary.labels.most_common(10)
    alt = "Bar chart of top-1 label frequencies" + (": " + ", ".join(f"{k} {n}" for k, n in top_items)
                                                     if top_items else ": no labelled videos")
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<title>stam-label report: {esc(summary.output_uri)}</title><style>{CSS}</style></head><body>",
           f"<h1>Label report</h1><div class='meta'>{esc(summary.output_uri)} · generated "
           f"{now:%Y-%m-%d %H:%M UTC}</div>",
           f"<p>{summary.videos} videos: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.status.most_common())
           + (", windows: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.windows.most_common())
              if summary.windows else "") + "</p>"]
    costs = run_costs(summary.runs)
    if costs:
        out.append("<p class='note'>" + "<br>".join(esc(line.strip()) for line in
                                                   format_costs(summary.runs, hourly_price)) + "</p>")
    out += ["<h2>Top-1 label frequencies</h2>",
            f"<img class='chart' src='data:image/png;base64,{chart}' alt='{esc(alt)}'>",
            f"<h2>Videos ({num_ok} labelled, {num_failed} failed)</h2>"]
    if num_ok > len(shown):
        out.append(f"<p class='note'>Showing the first {len(shown)} of {num_ok} labelled videos (by URI); "
                   f"{num_ok - len(shown)} left out (raise --max-videos to see more).</p>")
    if num_failed > len(failed):
        out.append(f"<p class='note'>Showing the first {len(failed)} of {num_failed} failed videos; "
                   f"{num_failed - len(failed)} more failed videos left out (raise --max-videos to list them).</p>")
    if presign is not None and presign_expires:
        until = now + dt.timedelta(seconds=presign_expires)
        out.append(f"<p class='note'>Links to s3:// videos are presigned URLs, valid until {until:%Y-%m-%d %H:%M UTC}"
                   " (anyone with this page can open those videos until then).</p>")
    out.append(_controls_html(summary, low_confidence))
    cards = [(v.row["video_uri"], _video_html(v, strips, low_confidence, presign)) for v in shown]
    cards += [(r["video_uri"], _failed_html(r, presign)) for r in failed]
    out.append("<div id='videos'>")
    out += [card for _, card in sorted(cards, key=lambda item: item[0])]
    out.append("</div>")
    if not cards:
        out.append("<p class='note'>No videos.</p>")
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def _controls_html(summary: TableSummary, low_confidence: float) -> str:
    esc = html.escape
    statuses = "".join(f"<option value='{esc(s)}'>{esc(s)}</option>" for s in sorted(summary.status))
    labels = "".join(f"<option value='{esc(k)}'>" for k in sorted(summary.labels))
    return (
        "<form class='controls' id='controls' onsubmit='return false'>"
        "<label>label <input type='search' id='f-label' list='f-labels' placeholder='any label'></label>"
        f"<datalist id='f-labels'>{labels}</datalist>"
        "<label title='match any of the top-k labels, not only the top-1'>"
        "<input type='checkbox' id='f-any'> any of top-k</label>"
        f"<label>status <select id='f-status'><option value=''>any</option>{statuses}</select></label>"
        "<label>top-1 score <input type='number' id='f-min' min='0' max='1' step='0.01' placeholder='min'></label>"
        "<label>to <input type='number' id='f-max' min='0' max='1' step='0.01' placeholder='max'></label>"
        "<label><input type='checkbox' id='f-low'> low confidence only</label>"
        "<label title='rows whose top-1 score is under this are highlighted'>low confidence below "
        f"<input type='number' id='f-threshold' min='0' max='1' step='0.01' value='{low_confidence:g}'></label>"
        "<label>sort <select id='f-sort'><option value='uri'>video</option><option value='label'>label</option>"
        "<option value='score'>score, highest first</option><option value='score-asc'>score, lowest first</option>"
        "<option value='status'>status</option></select></label>"
        "<button type='button' id='f-reset'>reset</button>"
        "<span id='shown-count'></span></form>"
        f"<p class='note'>Highlighted: top-1 score below <b id='threshold-shown'>{low_confidence:.2f}</b> "
        "(--low-confidence). The filters are kept in the address (#...), so a view can be bookmarked.</p>"
    )


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


def _top1(row: dict) -> tuple[str | None, float | None]:
    labels, scores = row.get("labels") or [], row.get("scores") or []
    return (labels[0] if labels else None), (float(scores[0]) if scores and scores[0] is not None else None)


def _card_open(row: dict, classes: str, low_confidence: float, presign: Presigner | None) -> tuple[str, str]:
    """The card's opening tag (the data-* attributes the page script sorts and filters on), its
    title with the status, the low-confidence badge and the link to the video, and the URI line."""
    esc = html.escape
    uri = row["video_uri"]
    label, score = _top1(row)
    attrs = [f"data-uri='{esc(uri)}'", f"data-status='{esc(row['status'])}'"]
    if row["status"] == "ok":
        attrs.append(f"data-label='{esc(label or '')}'")
        attrs.append(f"data-labels='{esc(chr(10).join(row.get('labels') or []))}'")
        if score is not None:
            attrs.append(f"data-score='{score:.6f}'")
            if score < low_confidence:
                classes += " low"
    href = video_href(uri, presign)
    link = (f"<a class='open' href='{esc(href)}' target='_blank' rel='noopener noreferrer'>open video</a>"
            if href else "")
    hint = " (s3: run inspect with --presign for a link)" if href is None and uri.startswith("s3://") else ""
    name = uri.rsplit("/", 1)[-1]
    return (f"<section class='{classes}' {' '.join(attrs)}>"
            f"<h3 title='{esc(uri)}'>{esc(name)}<span class='status'>{esc(row['status'])}</span>"
            f"<span class='badge'>low confidence</span>{link}</h3>"), hint


def _video_html(v: Video, strips: dict, low_confidence: float = LOW_CONFIDENCE,
                presign: Presigner | None = None) -> str:
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
    head, hint = _card_open(r, "video", low_confidence, presign)
    parts = [head, f"<div class='meta'><span class='uri'>{esc(r['video_uri'])}</span>{esc(hint)} · "
                   f"{' · '.join(meta)}</div>"]
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
                parts.append(f"<div class='window'><div class='window-head'>{esc(head)}</div><div class='note warn'>"
                             f"failed [{esc(w['error_kind'] or '')}]: {esc(w['error'] or '')}</div></div>")
                continue
            _, score = _top1(w)
            low = score is not None and score < low_confidence
            data = f" data-score='{score:.6f}'" if score is not None else ""
            strip = strips.get((w["video_uri"], w["segment_index"]))
            parts.append(f"<div class='window{' low' if low else ''}'{data}><div class='window-head'>{esc(head)}"
                         f"<span class='badge'>low confidence</span></div>"
                         f"<div class='row'>{_strip_html(strip, w)}{_top_html(w)}</div></div>")
    parts.append("</section>")
    return "".join(parts)


def _failed_html(r: dict, presign: Presigner | None = None) -> str:
    esc = html.escape
    head, hint = _card_open(r, "video failed", LOW_CONFIDENCE, presign)
    return (f"{head}<div class='meta'><span class='uri'>{esc(r['video_uri'])}</span>{esc(hint)}</div>"
            f"<div class='note warn'>failed [<span class='kind'>{esc(r['error_kind'] or 'unknown')}</span>]: "
            f"{esc(r['error'] or '')}</div></section>")


def write_html(output_uri: str, path: str, max_videos: int = 200, workers: int = 1, **options) -> TableSummary:
    """Load OUTPUT and write its page to ``path``; ``options`` go to render_html."""
    table, summary = load(output_uri)
    _write_text(path, render_html(table, summary, max_videos=max_videos, workers=workers, **options))
    return summary


def _write_text(path: str, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: str, data: bytes) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # a browser reloading it never sees half a page


@click.command("inspect")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write a static, self-contained HTML report (chart, thumbnails, top-5 labels, failures, "
                   "sorting and filtering by label, score and status).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the label-frequency bar chart as a PNG.")
@click.option("--max-videos", type=click.IntRange(1), default=200, show_default=True,
              help="Videos shown with thumbnails in --html (and failed videos listed); the rest are counted.")
@click.option("--top", type=click.IntRange(1), default=15, show_default=True, help="Labels listed in the summary.")
@click.option("--workers", type=click.IntRange(1), default=CLI_WORKERS, show_default="up to 4, one per core",
              help="Processes decoding thumbnails in parallel.")
@click.option("--low-confidence", type=click.FloatRange(0, 1), default=LOW_CONFIDENCE, show_default=True,
              help="In --html, highlight videos and windows whose top-1 score is below this.")
@click.option("--presign", is_flag=True,
              help="In --html, link s3:// videos with presigned URLs (signed locally with your AWS "
                   "credentials; anyone with the page can open them until they expire). Without it "
                   "s3:// URIs are shown as text.")
@click.option("--presign-expires", type=click.IntRange(1, MAX_PRESIGN_EXPIRES), default=PRESIGN_EXPIRES,
              show_default=True, metavar="SECONDS", help="How long presigned links stay valid (at most 7 days).")
@click.option("--hourly-price", type=click.FloatRange(0), default=None, metavar="PRICE",
              help="Price of the cluster per hour: also print the price per video and per footage hour "
                   "(from the runs' wall time).")
def inspect_command(output_uri: str, html_path: str | None, plot_path: str | None, max_videos: int, top: int,
                    workers: int, low_confidence: float, presign: bool, presign_expires: int,
                    hourly_price: float | None) -> None:
    """Summarise the label table in OUTPUT: counts by status, frequent labels, error kinds and,
    where the run records have them, the cost per video and per hour of footage.

    With --html, also write a page to check labels by eye; with --plot, the label chart as PNG.
    """
    try:
        # The text needs a few columns; the page also the frames' indices and the segment bounds.
        table, summary = load(output_uri, READ_COLUMNS if html_path else SUMMARY_COLUMNS)
    except (ReportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(summary, top=top))
    click.echo("\n".join(format_costs(summary.runs, hourly_price)))
    if plot_path:
        write_plot(summary.labels, plot_path)
        click.echo(f"chart: {plot_path}")
    if html_path:
        presigner = None
        if presign:
            try:
                presigner = s3_presigner(presign_expires)
            except Exception as exc:  # boto3 missing or misconfigured: say why, never a URL
                raise click.ClickException(f"--presign: cannot sign S3 URLs ({type(exc).__name__}: {exc})") from None
        shown = min(max_videos, summary.status.get("ok", 0))
        click.echo(f"reading thumbnails of {shown} videos ...")
        try:
            page = render_html(table, summary, max_videos=max_videos, workers=workers, low_confidence=low_confidence,
                               presign=presigner, presign_expires=presign_expires, hourly_price=hourly_price)
        except Exception as exc:
            if presigner is None or type(exc).__module__.split(".")[0] not in ("botocore", "boto3"):
                raise
            raise click.ClickException(f"--presign: cannot sign S3 URLs ({type(exc).__name__}: {exc})") from None
        _write_text(html_path, page)
        if presigner is not None:
            # Never the URLs themselves: they carry signatures and stay out of logs and terminals.
            click.echo(f"video links: s3:// videos presigned, valid {_duration(presign_expires)}")
        click.echo(f"report: {html_path}")
