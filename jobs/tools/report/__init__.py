"""A label table's report: the text summary and costs, the label-frequency chart and the HTML
page (the click command is jobs.cli.inspect; docs/report.md has more).

The text summary counts videos by status, the most frequent top-1 labels, the error kinds and,
where the run records have them, what labelling cost per video and per hour of footage. The page
is one self-contained file for a person checking labels by eye: the chart, then one card per
video with the frames the model saw, its top-5 labels and a link to the video, sorted and
filtered by label, score and status in the page.

    summary  load, summarize, select_videos, format_summary   costs  run_costs, format_costs
    chart    label_figure, write_plot                          links  s3_presigner, video_href
    strips   read_strip (thumbnails)                           cards, page  render_html, write_report
"""
from jobs.tools.report.cards import LOW_CONFIDENCE
from jobs.tools.report.chart import (
    BAR_COLOUR,
    CHART_DPI,
    CHART_LABELS,
    label_figure,
    plot_png,
    write_plot,
)
from jobs.tools.report.costs import CostLine, duration, format_costs, run_costs
from jobs.tools.report.links import (
    MAX_PRESIGN_EXPIRES,
    PRESIGN_EXPIRES,
    Presigner,
    s3_presigner,
    video_href,
)
from jobs.tools.report.page import render_html, write_html, write_report
from jobs.tools.report.strips import CLI_WORKERS, THUMB, Strip, read_strip
from jobs.tools.report.summary import (
    READ_COLUMNS,
    SUMMARY_COLUMNS,
    ReportError,
    TableSummary,
    Video,
    format_summary,
    load,
    select_videos,
    summarize,
)

__all__ = [
    "BAR_COLOUR", "CHART_DPI", "CHART_LABELS", "CLI_WORKERS", "LOW_CONFIDENCE", "MAX_PRESIGN_EXPIRES",
    "PRESIGN_EXPIRES", "READ_COLUMNS", "SUMMARY_COLUMNS", "THUMB", "CostLine", "Presigner", "ReportError",
    "Strip", "TableSummary", "Video", "duration", "format_costs", "format_summary", "label_figure", "load",
    "plot_png", "read_strip", "render_html", "run_costs", "s3_presigner", "select_videos", "summarize",
    "video_href", "write_html", "write_plot", "write_report",
]
