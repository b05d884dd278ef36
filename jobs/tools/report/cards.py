"""One card per video on the page: its title with status, low-confidence badge and link, the
thumbnails with the top-5 labels, and for windowed runs one block per window.

The data-* attributes on a card are what the page script sorts and filters on (page.js).
"""
from __future__ import annotations

import html

from jobs.storage import is_s3
from jobs.text import plural
from jobs.tools.report.links import Presigner, video_href
from jobs.tools.report.strips import Strip
from jobs.tools.report.summary import Video

LOW_CONFIDENCE = 0.3  # default --low-confidence: top-1 probabilities under it are highlighted


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
    human = row.get("human_label")  # a person's label replaces the model's top-1 (the model's list stays)
    attrs = [f"data-uri='{esc(uri)}'", f"data-status='{esc(row['status'])}'"]
    if row["status"] == "ok":
        attrs.append(f"data-label='{esc(human or label or '')}'")
        attrs.append(f"data-labels='{esc(chr(10).join(row.get('labels') or []))}'")
        if score is not None:
            attrs.append(f"data-score='{score:.6f}'")
            if score < low_confidence:
                classes += " low"
    href = video_href(uri, presign)
    link = (f"<a class='open' href='{esc(href)}' target='_blank' rel='noopener noreferrer'>open video</a>"
            if href else "")
    hint = " (s3: run inspect with --presign for a link)" if href is None and is_s3(uri) else ""
    name = uri.rsplit("/", 1)[-1]
    mark = ""
    if human:
        attrs.append("data-source='human'")
        who = f"reviewed by {row.get('reviewed_by') or 'unknown'}" + (
            f" at {row['reviewed_at']:%Y-%m-%d %H:%M} UTC" if row.get("reviewed_at") else "")
        mark = f"<span class='human' title='{esc(who)}'>human: {esc(human)}</span>"
    return (f"<section class='{classes}' {' '.join(attrs)}>"
            f"<h3 title='{esc(uri)}'>{esc(name)}<span class='status'>{esc(row['status'])}</span>{mark}"
            f"<span class='badge'>low confidence</span>{link}</h3>"), hint


def video_card(v: Video, strips: dict, low_confidence: float = LOW_CONFIDENCE,
                presign: Presigner | None = None) -> str:
    """A labelled video's card; ``strips`` maps (video_uri, segment_index) to its thumbnails."""
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
    parts = [head, (f"<div class='meta'><span class='uri'>{esc(r['video_uri'])}</span>{esc(hint)} · "
                    f"{' · '.join(meta)}</div>")]
    if not v.windows:
        parts.append(f"<div class='row'>{_strip_html(strips.get((r['video_uri'], r['segment_index'])), r)}"
                     f"{_top_html(r)}</div>")
    else:
        parts.append(f"<div class='window-head'>whole video ({plural(len(v.windows), 'window')}, mean of window "
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


def failed_card(r: dict, presign: Presigner | None = None) -> str:
    """The card of a video that failed: its error kind and message."""
    esc = html.escape
    head, hint = _card_open(r, "video failed", LOW_CONFIDENCE, presign)
    return (f"{head}<div class='meta'><span class='uri'>{esc(r['video_uri'])}</span>{esc(hint)}</div>"
            f"<div class='note warn'>failed [<span class='kind'>{esc(r['error_kind'] or 'unknown')}</span>]: "
            f"{esc(r['error'] or '')}</div></section>")
