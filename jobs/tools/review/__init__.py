"""The human review loop, without click (the commands are jobs.cli.review):

    queue        select_for_review, write_queue, label_config   `stam-label review`
    label_studio LabelStudio (push over REST), read_label_studio_export
    imports      read_answers, import_reviews                   `stam-label import-reviews`
    diff         diff_versions, format_diff/diff_json/diff_html `stam-label diff`
"""
from jobs.tools.review.diff import TableDiff, diff_html, diff_json, diff_versions, format_diff, resolve_version
from jobs.tools.review.imports import ImportResult, import_reviews, read_answers
from jobs.tools.review.label_studio import Answer, LabelStudio, read_label_studio_export
from jobs.tools.review.queue import (
    QUEUE_FORMATS,
    ReviewError,
    Selection,
    config_path,
    label_config,
    label_studio_tasks,
    queue_format,
    select_for_review,
    write_queue,
)

__all__ = [
    "QUEUE_FORMATS", "Answer", "ImportResult", "LabelStudio", "ReviewError", "Selection", "TableDiff", "config_path",
    "diff_html", "diff_json", "diff_versions", "format_diff", "import_reviews", "label_config",
    "label_studio_tasks", "queue_format", "read_answers", "read_label_studio_export", "resolve_version",
    "select_for_review", "write_queue",
]
