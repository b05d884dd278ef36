"""Plain values at the bottom of the driver: counts of videos and rows, and what a commit did.

The committer (jobs/commit.py) returns a ``Committed`` per commit; the run's summary
(jobs.runs.RunSummary, a Counts) adds them up. Imports nothing of the job.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Counts:
    """Videos (their video-level rows) and rows, ok and error, and the error kinds seen."""

    ok: int = 0
    error: int = 0
    rows: int = 0
    footage_s: float = 0.0  # duration of the videos labelled ok
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)  # kind -> the first message seen

    @property
    def processed(self) -> int:
        return self.ok + self.error

    def add(self, other: Counts) -> None:
        """Add the videos, rows and errors of ``other``."""
        self.ok, self.error, self.rows = self.ok + other.ok, self.error + other.error, self.rows + other.rows
        self.footage_s += other.footage_s
        for kind, count in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count
            self.error_examples.setdefault(kind, other.error_examples[kind])


@dataclass(frozen=True)
class Committed:
    """What one commit did."""

    seq: int  # the run's commit sequence (the Delta app transaction's version)
    version: int | None  # the table version written; None when it had landed already (its answer was lost)
    counts: Counts  # the videos and rows it made current
    rows_rewritten: int  # rows of other videos copied into new files (their file held a replaced video)
    seconds: float  # its time, retries included
    tries: int
