"""The driver's side of the stream: whole videos in, Delta commits out.

Rows arrive from the model stage in any order. A video's rows (its windows and video-level
row in window mode) are committed together; a commit happens every ``commit_every`` rows or
``commit_interval_s`` seconds, whichever comes first, so a killed driver loses at most that
much work and the next run labels exactly what is missing. At the end, ``reconcile`` turns
planned videos that never came back into "lost" rows.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from jobs import plan as planning
from jobs.errors import JobFailed
from jobs.segments import VIDEO_LEVEL, VideoLevel, video_row_index
from jobs.stages.records import split_labelled
from jobs.table import CommitResult, LabelTable

log = logging.getLogger("stam_label")


@dataclass(kw_only=True)
class Counts:
    """Videos (their video-level rows) and rows committed by this run, and what they cost."""

    ok: int = 0
    error: int = 0
    rows: int = 0
    commits: int = 0
    rewritten_rows: int = 0  # rows copied into new files by this run's commits (files that held a replaced video)
    commit_s: float = 0.0  # time spent in commits, retries included
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    placement: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> Ray node id -> clips
    output_times: list[tuple[float, int]] = field(default_factory=list)  # (arrival, videos so far)
    decode_cpu_s: float = 0.0  # CPU time of the decode workers, every clip (windows included)
    model_s: float = 0.0  # model actor time (GPU or CPU), every clip
    footage_s: float = 0.0  # duration of the videos labelled ok

    @property
    def processed(self) -> int:
        return self.ok + self.error

    def add(self, other: "Counts") -> None:
        """Add the videos, rows and errors of ``other`` (a committed batch's tally)."""
        self.ok, self.error, self.rows = self.ok + other.ok, self.error + other.error, self.rows + other.rows
        self.footage_s += other.footage_s
        for kind, count in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count
            self.error_examples.setdefault(kind, other.error_examples[kind])

    @property
    def totals(self) -> dict:
        """Per-stage cost, as the run record stores it."""
        return {"decode_cpu_s": self.decode_cpu_s, "model_s": self.model_s, "footage_s": self.footage_s,
                "videos": self.processed}


class Committer:
    def __init__(self, table: LabelTable, *, run_id: str, schema: pa.Schema, commit_every: int,
                 commit_interval_s: float, video_level: VideoLevel | None,
                 on_videos: Callable[[int, int], None] | None = None, counts: Counts | None = None):
        self.table, self.run_id, self.schema = table, run_id, schema
        self.commit_every, self.commit_interval_s = commit_every, commit_interval_s
        self.video_level = video_level
        self.level = VIDEO_LEVEL if video_level else 0
        self.on_videos = on_videos
        self.counts = counts if counts is not None else Counts()  # the run's summary, or its own
        self.seq = 0
        self._pending: list[tuple[pa.Table, Counts]] = []  # rows not committed yet, and their tally
        self._arrived = 0  # videos whose rows arrived (committed or not): the rate's basis
        self._pending_rows = 0
        self._last_commit = time.monotonic()

    def add_model_rows(self, batch: pa.Table) -> None:
        """A model-stage batch: output rows and their FACTS (jobs.stages.records)."""
        rows, facts = split_labelled(batch, self.schema)
        for stage in ("decode", "model"):
            clips_on = self.counts.placement.setdefault(stage, {})
            for node in facts[f"{stage}_node"].to_pylist():
                clips_on[node] = clips_on.get(node, 0) + 1
        self.counts.model_s += pc.sum(facts["model_s"]).as_py() or 0.0
        self.counts.decode_cpu_s += (pc.sum(rows["decode_cpu_ms"]).as_py() or 0.0) / 1000
        if self.video_level is not None:
            finished = self.video_level.add(rows, facts)
            if finished:
                self.add(pa.Table.from_pylist(finished, schema=self.schema))
        else:
            self.add(rows)
        self.counts.output_times.append((time.time(), self._arrived))

    def add(self, rows: pa.Table) -> None:
        """Whole videos' rows in the output schema. They count once their commit succeeds."""
        tally = self._tally(rows)
        self._pending.append((rows, tally))
        self._pending_rows += rows.num_rows
        self._arrived += tally.processed
        if self.on_videos is not None and tally.processed:
            self.on_videos(tally.ok, tally.error)
        if self._pending_rows >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.flush()

    def flush(self) -> CommitResult | None:
        if not self._pending:
            return None
        rows = pa.concat_tables([pending for pending, _ in self._pending])
        self.seq += 1
        start = time.monotonic()
        result = self.table.commit(rows, run_id=self.run_id, seq=self.seq)
        self.counts.commit_s += time.monotonic() - start
        for _, tally in self._pending:
            self.counts.add(tally)
        self._pending.clear()
        self._pending_rows = 0
        self._last_commit = time.monotonic()
        self.counts.commits += 1
        self.counts.rewritten_rows += result.rewritten_rows
        log.debug("commit %d: %d rows, table version %s", self.seq, result.rows, result.version)
        return result

    def finish_windows(self) -> None:
        """Window mode: videos some of whose windows never came back become `incomplete` errors."""
        if self.video_level is not None:
            leftovers = self.video_level.flush()
            if leftovers:
                log.warning("%d videos are missing windows (their Ray tasks failed past retries)",
                            sum(1 for r in leftovers if r["segment_index"] == VIDEO_LEVEL))
                self.add(pa.Table.from_pylist(leftovers, schema=self.schema))

    def _tally(self, rows: pa.Table) -> Counts:
        """The videos (their video-level rows) and rows in ``rows``."""
        tally = Counts(rows=rows.num_rows)
        for index, status, kind, message, duration in zip(
                rows["segment_index"].to_pylist(), rows["status"].to_pylist(), rows["error_kind"].to_pylist(),
                rows["error"].to_pylist(), rows["duration_s"].to_pylist()):
            if index != self.level:
                continue
            if status == "ok":
                tally.ok += 1
                tally.footage_s += duration or 0.0
            else:
                tally.error += 1
                tally.error_kinds[kind] = tally.error_kinds.get(kind, 0) + 1
                tally.error_examples.setdefault(kind, message)
        return tally


def reconcile(committer: Committer, plan, *, mode: str, batch_rows: int) -> int:
    """Plan rows that produced no row (Ray gave up on their tasks) become "lost" error rows.

    Returns how many; raises JobFailed when every planned video was lost (the pipeline itself
    is broken, not the videos).
    """
    table, run_id = committer.table, committer.run_id
    if planning.written_since(table, plan, run_id, mode) >= plan.total:
        return 0  # every planned video has a row from this run: nothing lost, no join needed
    lost = 0
    for batch in planning.lost(table, plan, mode).iter_batches(batch_size=batch_rows, batch_format="pyarrow"):
        committer.add(lost_rows(batch, committer.schema, run_id=run_id, mode=mode))
        lost += batch.num_rows
    committer.flush()
    if lost:
        log.warning("%d videos produced no row (their Ray tasks failed past retries): recorded as 'lost'", lost)
    if plan.total and lost == plan.total:
        raise JobFailed(f"every Ray task failed; no video was labelled (run {run_id}, see the log above)")
    return lost


def lost_rows(lost: pa.Table, schema: pa.Schema, *, run_id: str, mode: str) -> pa.Table:
    """The error rows of planned videos that never came back."""
    now = dt.datetime.now(dt.timezone.utc)
    return pa.Table.from_pylist([{
        "video_uri": it["video_uri"], "mode": mode, "segment_index": video_row_index(mode), "status": "error",
        "error": f"{it['video_uri']}: no result: its Ray task failed past its retries (the run's log says "
                 "why); the next run labels it again",
        "error_kind": "lost", "source_size": it["source_size"], "source_version": it["source_version"],
        "run_id": run_id, "labelled_at": now,
    } for it in lost.to_pylist()], schema=schema)
