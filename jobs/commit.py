"""The driver's side of the stream: whole videos in, Delta commits out.

Rows arrive from the model stage in any order. A video's rows (its windows and video-level
row in window mode) are committed together; a commit happens every ``commit_every`` rows or
``commit_interval_s`` seconds, whichever comes first, so a killed driver loses at most that
much work and the next run labels exactly what is missing. Each commit returns what it did
(``Committed``); the caller adds it to the run's counts, so a video counts once its commit
succeeded. Videos that never came back are reconciled by jobs/reconcile.py.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pyarrow as pa

from jobs.counts import Committed, Counts
from jobs.segments import VIDEO_LEVEL, VideoLevel
from jobs.table import LabelTable

log = logging.getLogger("stam_label")


class Committer:
    """Whole videos' rows in, one Delta transaction per ``commit_every`` rows or ``commit_interval_s``.

    ``on_videos(ok, error)`` is told of videos as their rows arrive (progress); what a commit
    made current is only in the ``Committed`` it returns.
    """

    def __init__(self, table: LabelTable, *, run_id: str, schema: pa.Schema, commit_every: int,
                 commit_interval_s: float, video_level: VideoLevel | None,
                 on_videos: Callable[[int, int], None] | None = None):
        self.table, self.run_id, self.schema = table, run_id, schema
        self.commit_every, self.commit_interval_s = commit_every, commit_interval_s
        self.video_level = video_level
        self.level = VIDEO_LEVEL if video_level else 0
        self.on_videos = on_videos
        self.seq = 0
        self.arrived = 0  # videos whose rows arrived (committed or not): the rate's basis
        self._pending: list[tuple[pa.Table, Counts]] = []  # rows not committed yet, and their tally
        self._pending_rows = 0
        self._last_commit = time.monotonic()

    def add_model_rows(self, rows: pa.Table, facts: pa.Table) -> Committed | None:
        """A model-stage batch split into output rows and FACTS (jobs.stages.records): in window
        mode its windows wait until their video is whole."""
        if self.video_level is None:
            return self.add(rows)
        finished = self.video_level.add(rows, facts)
        return self.add(pa.Table.from_pylist(finished, schema=self.schema)) if finished else None

    def add(self, rows: pa.Table) -> Committed | None:
        """Whole videos' rows in the output schema; returns the commit they set off, if any."""
        tally = self._tally(rows)
        self._pending.append((rows, tally))
        self._pending_rows += rows.num_rows
        self.arrived += tally.processed
        if self.on_videos is not None and tally.processed:
            self.on_videos(tally.ok, tally.error)
        if self._pending_rows >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_interval_s:
            return self.flush()
        return None

    def flush(self) -> Committed | None:
        """Commit what is pending (None when nothing is). A CommitError leaves it pending."""
        if not self._pending:
            return None
        rows = pa.concat_tables([pending for pending, _ in self._pending])
        self.seq += 1
        start = time.monotonic()
        result = self.table.commit(rows, run_id=self.run_id, seq=self.seq)
        seconds = time.monotonic() - start
        counts = Counts()
        for _, tally in self._pending:
            counts.add(tally)
        self._pending.clear()
        self._pending_rows = 0
        self._last_commit = time.monotonic()
        log.debug("commit %d: %d rows, table version %s", self.seq, result.rows, result.version)
        return Committed(seq=self.seq, version=result.version, counts=counts, rows_rewritten=result.rewritten_rows,
                         seconds=seconds, tries=result.tries)

    def finish_windows(self) -> Committed | None:
        """Window mode: videos some of whose windows never came back become `incomplete` errors."""
        if self.video_level is None:
            return None
        leftovers = self.video_level.flush()
        if not leftovers:
            return None
        log.warning("%d videos are missing windows (their Ray tasks failed past retries)",
                    sum(1 for r in leftovers if r["segment_index"] == VIDEO_LEVEL))
        return self.add(pa.Table.from_pylist(leftovers, schema=self.schema))

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
