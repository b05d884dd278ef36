"""The report page: one self-contained HTML file (no server, no network). The chart is an inline
PNG, the thumbnails inline JPEG, the styles (page.css) and the sorting and filtering script
(page.js) inline too.

The page script keeps its state in the URL fragment
(#label=..&any=1&status=..&min=..&max=..&low=1&threshold=..&sort=..), read on load and on
hashchange and rewritten (replaceState: no history entries) on every change, so a filtered
view can be bookmarked or shared.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
from importlib import resources

import pyarrow as pa

from jobs.text import plural
from jobs.tools.report.cards import LOW_CONFIDENCE, failed_card, video_card
from jobs.tools.report.chart import plot_png
from jobs.tools.report.costs import format_costs, run_costs
from jobs.tools.report.links import Presigner
from jobs.tools.report.strips import read_strips
from jobs.tools.report.summary import TableSummary, load, select_videos
from stam_core.storage import write_atomic


def _asset(name: str) -> str:
    # The leading newline keeps <style>/<script> as the page has always had them.
    return "\n" + resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


CSS = _asset("page.css")
SCRIPT = _asset("page.js")


def render_html(table: pa.Table, summary: TableSummary, max_videos: int = 200, workers: int = 1,
                low_confidence: float = LOW_CONFIDENCE, presign: Presigner | None = None,
                presign_expires: int | None = None, hourly_price: float | None = None) -> str:
    """The page for the current rows in ``table`` (READ_COLUMNS). ``workers`` > 1 decodes thumbnails
    in that many spawned processes (they re-import the caller's ``__main__``, so a script run
    from stdin must keep workers=1). ``presign`` (see s3_presigner) links s3:// videos;
    ``presign_expires`` is only shown on the page."""
    shown, num_ok, failed, num_failed = select_videos(table, max_videos)
    strips = read_strips(shown, workers)
    esc = html.escape
    now = dt.datetime.now(dt.timezone.utc)
    chart = base64.b64encode(plot_png(summary.labels)).decode("ascii")
    top_items = summary.labels.most_common(10)
    alt = "Bar chart of top-1 label frequencies" + (": " + ", ".join(f"{k} {n}" for k, n in top_items)
                                                     if top_items else ": no labelled videos")
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<title>stam-label report: {esc(summary.output_uri)}</title><style>{CSS}</style></head><body>",
           (f"<h1>Label report</h1><div class='meta'>{esc(summary.output_uri)} · generated "
            f"{now:%Y-%m-%d %H:%M UTC}</div>"),
           f"<p>{plural(summary.videos, 'video')}: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.status.most_common())
           + (", windows: " + ", ".join(f"{n} {esc(k)}" for k, n in summary.windows.most_common())
              if summary.windows else "")
           + (f"; {summary.reviewed} reviewed by people ({summary.overridden} changed the model's label)"
              if summary.reviewed else "") + "</p>"]
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
    cards = [(v.row["video_uri"], video_card(v, strips, low_confidence, presign)) for v in shown]
    cards += [(r["video_uri"], failed_card(r, presign)) for r in failed]
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



def write_html(output_uri: str, path: str, max_videos: int = 200, workers: int = 1, **options) -> TableSummary:
    """Load OUTPUT and write its page to ``path``; ``options`` go to render_html."""
    table, summary = load(output_uri)
    write_report(path, render_html(table, summary, max_videos=max_videos, workers=workers, **options))
    return summary



def write_report(path: str, text: str) -> None:
    """Publish the page at ``path`` at once: a browser reloading it never sees half a page."""
    write_atomic(path, text.encode("utf-8"))
