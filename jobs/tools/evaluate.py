"""Evaluate: accuracy on labelled videos, measured through the labelling job itself (`stam-label evaluate`).

The manifest's videos go through ``jobs.pipeline.run_job`` exactly as a `run` would label
them (same decoding, sampling, batching, precision), into a label table; the metrics are then
computed from that table's current rows. So the number measured is the number users get.

Manifest formats (CSV with a header):

- ``video_uri,label``: any URI the job reads (local path, s3://); relative paths are relative
  to ``--video-root`` when given, else to the manifest's folder.
- the Kinetics annotation CSV ``label,youtube_id,time_start,time_end,split``: files are
  ``{video_root}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` (``--video-root`` needed).

Metrics: top-1 and top-5 accuracy (percent) over the videos that were labelled, the same
counting failed videos as wrong, mean per-class top-1 accuracy, per-class figures and the
most confused (true, predicted) pairs. Videos that fail are counted and listed with their
reasons, never dropped silently.
"""
from __future__ import annotations

import collections
import csv
import io
import os
import tempfile
from dataclasses import dataclass, field

from jobs.config import JobConfig
from jobs.errors import JobError
from jobs.runs import read_run_records
from jobs.segments import video_row_index
from jobs.storage import is_s3, resolve
from jobs.table import LabelTable
from jobs.text import plural
from stam_core.classes import load_class_names

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
CONFUSED_PAIRS = 20  # kept in the report; the printed summary shows the first 10


class EvaluationError(JobError):
    """The evaluation cannot run (bad manifest, unknown class names): exit 3; one line for the user."""


@dataclass(frozen=True)
class Example:
    uri: str
    label: str


@dataclass
class Evaluation:
    """The report; ``as_dict`` is what --json writes."""

    count: int  # videos in the manifest
    evaluated: int  # videos with a label row (status ok)
    top1: float | None  # percent over evaluated videos; None when none was evaluated
    top5: float | None
    top1_all: float | None  # percent over all videos, failed ones counted as wrong
    top5_all: float | None
    mean_class_accuracy: float | None  # mean over classes with evaluated videos of their top-1
    per_class: dict[str, dict] = field(default_factory=dict)
    confused_pairs: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    run: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "top1_all": self.top1_all, "top5_all": self.top5_all,
                "count": self.count, "evaluated": self.evaluated, "num_failed": len(self.failed),
                "mean_class_accuracy": self.mean_class_accuracy, "per_class": self.per_class,
                "confused_pairs": self.confused_pairs, "failed": self.failed, "run": self.run}


# ---- the manifest ------------------------------------------------------------------------
def read_manifest(manifest: str, class_names, video_root: str | None = None) -> list[Example]:
    """The labelled videos of MANIFEST, URIs as the job will write them in ``video_uri``."""
    fs, path = resolve(manifest)
    try:
        with fs.open_input_stream(path) as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise EvaluationError(f"{manifest}: manifest does not exist") from exc
    except OSError as exc:
        raise EvaluationError(f"{manifest}: cannot read manifest ({str(exc).splitlines()[0]})") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if {"video_uri", "label"} <= set(header):
        base = video_root or (os.path.dirname(path) if not is_s3(manifest) else manifest.rsplit("/", 1)[0])
        examples = [Example(_join(base, row["video_uri"].strip()), _label(row)) for row in reader
                    if (row.get("video_uri") or "").strip()]
    elif set(KINETICS_COLUMNS) <= set(header):
        if not video_root:
            raise EvaluationError(f"{manifest}: Kinetics annotation format needs --video-root (the folder "
                                  "or s3:// prefix holding {youtube_id}_{start:06d}_{end:06d}.mp4 files)")
        examples = [Example(_join(video_root, kinetics_file_name(row, manifest, n)), _label(row))
                    for n, row in enumerate(reader, start=2)]
    else:
        raise EvaluationError(f"{manifest}: expected a header 'video_uri,label' or the Kinetics "
                              f"'label,youtube_id,time_start,time_end,split'; found {','.join(header) or 'nothing'}")
    if not examples:
        raise EvaluationError(f"{manifest}: no videos listed")

    known = set(class_names)
    unknown = collections.Counter(e.label for e in examples if e.label not in known)
    if unknown:
        shown = ", ".join(f"{name!r} ({n})" for name, n in unknown.most_common(5))
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise EvaluationError(f"{manifest}: {plural(sum(unknown.values()), 'video')} {'has a label' if sum(unknown.values()) == 1 else 'have labels'} that are not class names "
                              f"of the model: {shown}{more}")
    return _dedupe(examples, manifest)


def _label(row: dict) -> str:
    # A short row leaves the label None; as "" it is reported with the unknown class names.
    return (row.get("label") or "").strip()


def kinetics_file_name(row: dict, manifest: str, line: int) -> str:
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{manifest}, line {line}: time_start/time_end must be numbers") from exc
    youtube_id = (row.get("youtube_id") or "").strip()
    if not youtube_id:
        raise EvaluationError(f"{manifest}, line {line}: no youtube_id")
    return f"{youtube_id}_{start:06d}_{end:06d}.mp4"


def _join(base: str, uri: str) -> str:
    """Absolute URIs as given; local paths made absolute, as the job's listing writes them."""
    if is_s3(uri):
        return uri
    if is_s3(base):
        return f"{base.rstrip('/')}/{uri}" if not os.path.isabs(uri) else uri
    return os.path.abspath(os.path.join(base, uri))


def _dedupe(examples: list[Example], manifest: str) -> list[Example]:
    seen: dict[str, str] = {}
    out = []
    for e in examples:
        if e.uri in seen:
            if seen[e.uri] != e.label:
                raise EvaluationError(f"{manifest}: {e.uri} is listed twice, with labels {seen[e.uri]!r} "
                                      f"and {e.label!r}")
            continue
        seen[e.uri] = e.label
        out.append(e)
    return out


# ---- the metrics -------------------------------------------------------------------------
def score(examples: list[Example], rows: dict[str, dict], class_names, top_k: int = 5) -> Evaluation:
    """Metrics from each example's video-level row (``rows`` by video_uri)."""
    index = {name: i for i, name in enumerate(class_names)}
    per_class: dict[str, dict] = {}
    confused: collections.Counter = collections.Counter()
    failed = []
    hit1 = hitk = evaluated = 0
    for e in examples:
        stats = per_class.setdefault(e.label, {"count": 0, "evaluated": 0, "top1_correct": 0, "top5_correct": 0,
                                               "failed": 0})
        stats["count"] += 1
        row = rows.get(e.uri)
        if row is None or row["status"] != "ok":
            stats["failed"] += 1
            failed.append({"video_uri": e.uri, "label": e.label,
                           "error_kind": row["error_kind"] if row else "missing",
                           "error": row["error"] if row else "the job wrote no row for this video"})
            continue
        ids = list(row["class_ids"])
        truth = index[e.label]
        evaluated += 1
        stats["evaluated"] += 1
        if ids and ids[0] == truth:
            hit1 += 1
            stats["top1_correct"] += 1
        elif ids:
            confused[(e.label, class_names[ids[0]])] += 1
        if truth in ids[:top_k]:
            hitk += 1
            stats["top5_correct"] += 1
    for stats in per_class.values():
        n = stats["evaluated"]
        stats["top1"] = _pct(stats["top1_correct"], n)
        stats["top5"] = _pct(stats["top5_correct"], n)
    class_acc = [s["top1"] for s in per_class.values() if s["evaluated"]]
    pairs = [{"true": t, "predicted": p, "count": n}
             for (t, p), n in sorted(confused.items(), key=lambda kv: (-kv[1], kv[0]))[:CONFUSED_PAIRS]]
    return Evaluation(
        count=len(examples), evaluated=evaluated, top1=_pct(hit1, evaluated), top5=_pct(hitk, evaluated),
        top1_all=_pct(hit1, len(examples)), top5_all=_pct(hitk, len(examples)),
        mean_class_accuracy=round(sum(class_acc) / len(class_acc), 4) if class_acc else None,
        per_class=dict(sorted(per_class.items())), confused_pairs=pairs, failed=failed)


def _pct(hits: int, n: int) -> float | None:
    return round(100.0 * hits / n, 4) if n else None


# ---- the run -----------------------------------------------------------------------------
def evaluate(manifest: str, config_kwargs: dict, *, video_root: str | None = None,
             output_uri: str | None = None) -> Evaluation:
    """Label the manifest's videos with run_job and score them.

    ``config_kwargs`` are JobConfig fields (weights, batch_size, address, ...). Without
    ``output_uri`` the label rows go to a temporary folder that is removed afterwards; with
    it they are kept there, and videos it already holds for these weights are not labelled again.
    """
    from jobs.pipeline import run_job  # Ray and torch: only when something is evaluated

    labels_file = config_kwargs.get("labels_file")
    class_names = load_class_names(labels_file)
    examples = read_manifest(manifest, class_names, video_root)
    config_kwargs = dict(config_kwargs)
    top_k = max(5, config_kwargs.pop("top_k", 5) or 5)  # top-5 needs at least five labels per row

    with tempfile.TemporaryDirectory(prefix="stam-evaluate-") as tmp:
        uri_list = os.path.join(tmp, "videos.txt")
        with open(uri_list, "w", encoding="utf-8") as f:
            f.write("".join(e.uri + "\n" for e in examples))
        out = output_uri or os.path.join(tmp, "labels")
        config = JobConfig(input_uri=uri_list, output_uri=out, top_k=top_k, **config_kwargs)
        summary = run_job(config)
        table = LabelTable(out)
        current = table.read_current(["video_uri", "mode", "segment_index", "status", "error", "error_kind",
                                      "class_ids", "weights_sha256", "run_id"])
        manifests = {m["run_id"]: m for m in read_run_records(table)}
    rows = {}
    for row in (current.to_pylist() if current is not None else []):
        # The video-level row: segment 0 of a whole-video run, -1 of a windowed one.
        if row["segment_index"] == video_row_index(row["mode"]):
            rows[row["video_uri"]] = row
    result = score(examples, rows, class_names, top_k=5)
    run_manifest = manifests.get(summary.run_id, {})
    result.run = {"run_id": summary.run_id, "weights": str(config.weights),
                  "weights_sha256": run_manifest.get("weights_sha256"), "model": run_manifest.get("model"),
                  "output": output_uri, "labelled": summary.processed, "skipped": summary.skipped,
                  "elapsed_s": round(summary.elapsed_s, 3)}
    return result


def format_report(result: Evaluation, pairs: int = 10, failures: int = 20) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.2f}%"

    lines = [
        f"videos: {result.count} in the manifest, {result.evaluated} labelled, {len(result.failed)} failed",
        f"top-1: {pct(result.top1)}   top-5: {pct(result.top5)}   (over the {result.evaluated} labelled videos)",
        f"counting failed videos as wrong: top-1 {pct(result.top1_all)}, top-5 {pct(result.top5_all)}",
        (f"mean per-class accuracy: {pct(result.mean_class_accuracy)} "
         f"({plural(sum(1 for s in result.per_class.values() if s['evaluated']), 'class', 'classes')})"),
    ]
    if result.confused_pairs:
        lines.append("most confused (true -> predicted top-1):")
        lines += [f"  {p['count']:6d}  {p['true']} -> {p['predicted']}" for p in result.confused_pairs[:pairs]]
    if result.failed:
        lines.append(f"failed videos ({len(result.failed)}):")
        lines += [f"  {f['video_uri']} [{f['error_kind']}]: {(f['error'] or '')[:160]}"
                  for f in result.failed[:failures]]
        if len(result.failed) > failures:
            lines.append(f"  ... and {len(result.failed) - failures} more (all listed in --json)")
    return "\n".join(lines)

