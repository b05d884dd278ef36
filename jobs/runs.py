"""Run records and leases: ``OUTPUT/_runs/<run>.json``, kept fresh by a heartbeat.

A record says what a run was asked to do and how it ended: status ``running``, then
``completed``, ``interrupted`` (SIGINT/SIGTERM), ``failed`` (with the reason) or ``killed``
(its heartbeat stopped: the next run on the same OUTPUT marks it so). A run that starts while
another live run writes the same OUTPUT warns and names it (overlapping cron runs are safe:
commits are serialised by the table, but they double the work).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from jobs.table import RUN_STALE_AFTER_S, LabelTable

log = logging.getLogger("stam_label")

HEARTBEAT_S = 60.0


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        return (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return float("inf")


def reap_dead_runs(table: LabelTable, own_run_id: str, stale_after_s: float = RUN_STALE_AFTER_S) -> list[str]:
    """Mark runs whose heartbeat stopped as ``killed``; warn about live ones. Returns live run ids."""
    live = []
    for record in table.read_run_records():
        run_id = record.get("run_id")
        if record.get("status") != "running" or run_id == own_run_id:
            continue
        age = _age_s(record.get("heartbeat_at") or record.get("started_at"))
        if age > stale_after_s:
            record.update(status="killed", finished_at=now_iso(),
                          reason=f"no heartbeat for {age:.0f} s (the driver died); the next run labels what it missed")
            table.write_run_record(run_id, record)
            log.warning("run %s on %s stopped without finishing; marked killed", run_id, table.uri)
        else:
            live.append(run_id)
            log.warning("run %s (host %s) is still writing %s (heartbeat %.0f s ago): both runs will label "
                        "the same new videos; commits stay exactly-once", run_id, record.get("host", "?"),
                        table.uri, age)
    return live


class RunRecord:
    """The run's record: written at start, on every heartbeat and at the end."""

    def __init__(self, table: LabelTable, record: dict, heartbeat_s: float = HEARTBEAT_S):
        self.table, self.record, self.heartbeat_s = table, record, heartbeat_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "RunRecord":
        self.record.update(status="running", heartbeat_at=now_iso())
        self._write()
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)
        self._thread.start()
        return self

    def update(self, **fields) -> None:
        with self._lock:
            self.record.update(fields)

    def finish(self, status: str, **fields) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.record.update(fields, status=status, finished_at=now_iso(), heartbeat_at=now_iso())
        try:
            self._write()
        except OSError as exc:  # the storage that failed the run may fail this too; say so, keep the reason
            log.error("cannot write the run record of %s: %s", self.record.get("run_id"), exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.record["heartbeat_at"] = now_iso()
            try:
                self._write()
            except OSError as exc:
                log.warning("heartbeat of run %s not written: %s", self.record.get("run_id"), exc)

    def _write(self) -> None:
        with self._lock:
            snapshot = dict(self.record)
        self.table.write_run_record(snapshot["run_id"], snapshot)
