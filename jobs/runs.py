"""Runs: their ids, records and plans beside the label table, and what a run did.

    OUTPUT/_runs/<run>.json      run records: configuration, counts, status, heartbeat
    OUTPUT/_runs/<run>.plan/     the run's plan (the keys it set out to label), Parquet

Delta readers ignore ``_``-prefixed paths, so none of this shows up as rows.

A record says what a run was asked to do and how it ended: status ``running``, then
``completed``, ``interrupted`` (SIGINT/SIGTERM), ``failed`` (with the reason) or ``killed``
(its heartbeat stopped, or its process on this host is gone: the next run on the same OUTPUT
marks it so). A run that starts while
another live run writes the same OUTPUT warns and names it (overlapping cron runs are safe:
commits are serialised by the table, but they double the work).
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import secrets
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from jobs.counts import Committed, Counts
from jobs.storage import put_bytes
from jobs.table import LabelTable
from stam_core.weights import redact_url

log = logging.getLogger("stam_label")

RUN_STALE_AFTER_S = 300  # a run whose heartbeat is older than this is dead
TEMP_FILE_MAX_AGE_S = 3600  # a temp file this old belongs to no live write
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE_PATH = "/proc/self/ns/pid"


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def runs_folder(table: LabelTable) -> str:
    return f"{table.root}/_runs"


def plan_path(table: LabelTable, run_id: str) -> str:
    """Where the run's plan is persisted (jobs.plan.build), in ``table.fs``."""
    return f"{runs_folder(table)}/{run_id}.plan"


def write_run_record(table: LabelTable, run_id: str, record: dict) -> None:
    body = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    put_bytes(table.fs, f"{runs_folder(table)}/{run_id}.json", body)


def read_run_records(table: LabelTable) -> list[dict]:
    """Every run record of ``table``'s OUTPUT, oldest first."""
    selector = pafs.FileSelector(runs_folder(table), allow_not_found=True)
    out = []
    for info in table.fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            with table.fs.open_input_stream(info.path) as f:
                try:
                    out.append(json.loads(f.read()))
                except ValueError:
                    log.warning("%s: not a run record (invalid JSON); ignored", info.path)
    return sorted(out, key=lambda m: m.get("started_at", ""))


def remove_stale_temp_files(table: LabelTable, max_age_s: float = TEMP_FILE_MAX_AGE_S) -> int:
    """Temp files of killed writers of run records, older than any live write could be (another
    run may be between its write and its rename right now)."""
    folder = runs_folder(table)
    if not isinstance(table.fs, pafs.LocalFileSystem) or not os.path.isdir(folder):
        return 0
    removed, now = 0, time.time()
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            try:
                if now - entry.stat().st_mtime > max_age_s:
                    os.remove(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass  # its writer renamed or removed it meanwhile
    return removed


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        return (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return float("inf")


def boot_id() -> str | None:
    """This boot of this machine (Linux); with the pid it names one process: a pid is reused after a reboot."""
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip() or None
    except OSError:  # not Linux, or /proc hidden: the pid alone decides
        return None


def pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers that share a hostname and a boot id number
    their processes apart, so a pid names a process only within its namespace."""
    try:
        return os.readlink(PID_NAMESPACE_PATH)
    except OSError:  # not Linux, or /proc hidden: host and boot id decide
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a killed driver whose parent has not reaped it yet is a zombie: gone, for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc: os.kill's answer stands
        return True


def _gone_from_this_host(record: dict) -> str | None:
    """Why the record's driver is certainly dead (it ran on this host and its process is gone), else None.

    A killed driver's heartbeat stays fresh for up to RUN_STALE_AFTER_S; on its own host we need not wait.
    """
    pid = record.get("pid")
    if record.get("host") != platform.node() or not isinstance(pid, int):
        return None
    recorded, now = record.get("boot_id"), boot_id()
    if recorded and now and recorded != now:
        return "this host has rebooted since"
    if record.get("pid_ns") != pid_namespace():  # another container's pid (or an older record): the heartbeat decides
        return None
    if not _pid_alive(pid):
        return f"its process {pid} on this host is gone"
    return None


def reap_dead_runs(table: LabelTable, own_run_id: str, stale_after_s: float = RUN_STALE_AFTER_S) -> list[str]:
    """Mark runs whose driver is dead as ``killed``: on this host, its process is gone; elsewhere,
    its heartbeat stopped. Warn about live ones. Returns live run ids."""
    live = []
    for record in read_run_records(table):
        run_id = record.get("run_id")
        if record.get("status") != "running" or run_id == own_run_id:
            continue
        age = _age_s(record.get("heartbeat_at") or record.get("started_at"))
        gone = _gone_from_this_host(record)
        if gone or age > stale_after_s:
            why = f"{gone} (the driver died)" if gone else f"no heartbeat for {age:.0f} s (the driver died)"
            record.update(status="killed", finished_at=now_iso(),
                          reason=f"{why}; the next run labels what it missed")
            write_run_record(table, run_id, record)
            log.warning("run %s on %s stopped without finishing; marked killed", run_id, table.uri)
        else:
            live.append(run_id)
            log.warning("run %s (host %s) is still writing %s (heartbeat %.0f s ago): both runs will label "
                        "the same new videos; commits stay exactly-once", run_id, record.get("host", "?"),
                        table.uri, age)
    return live


class RunRecord:
    """The run's record: written at start, on every heartbeat and at the end."""

    def __init__(self, table: LabelTable, record: dict, *, heartbeat_s: float):
        self.table, self.record, self.heartbeat_s = table, record, heartbeat_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RunRecord:
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
        write_run_record(self.table, snapshot["run_id"], snapshot)


@dataclass
class RunSummary(Counts):
    """What a run did: its plan, the Counts of its commits, and what the stages cost."""

    run_id: str
    output_uri: str
    commits: int = 0
    rewritten_rows: int = 0  # rows copied into new files by this run's commits (files that held a replaced video)
    commit_s: float = 0.0  # time spent in commits, retries included
    placement: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> Ray node id -> clips
    output_times: list[tuple[float, int]] = field(default_factory=list)  # (arrival, videos so far)
    decode_cpu_s: float = 0.0  # CPU time of the decode workers, every clip (windows included)
    model_s: float = 0.0  # model actor time (GPU or CPU), every clip
    listed: int = 0
    skipped: int = 0
    total: int = 0  # videos this run set out to label (the plan)
    lost: int = 0
    elapsed_s: float = 0.0
    plan_s: float = 0.0  # listing and the skip test
    execution_started_at: float = 0.0  # the plan is ready: the dataset starts
    dry_run: bool = False
    first_uris: list[str] = field(default_factory=list)  # --dry-run: the first videos to label
    estimated_decode_cpu_h: float = 0.0  # --dry-run

    def committed(self, done: Committed | None) -> None:
        """Count a commit's videos and rows (a video counts once its commit succeeded)."""
        if done is None:
            return
        self.add(done.counts)
        self.commits += 1
        self.rewritten_rows += done.rows_rewritten
        self.commit_s += done.seconds

    def add_facts(self, rows: pa.Table, facts: pa.Table) -> None:
        """A model-stage batch's cost: where its clips ran, model and decode time (jobs.stages.records FACTS)."""
        for stage in ("decode", "model"):
            clips_on = self.placement.setdefault(stage, {})
            for node in facts[f"{stage}_node"].to_pylist():
                clips_on[node] = clips_on.get(node, 0) + 1
        self.model_s += pc.sum(facts["model_s"]).as_py() or 0.0
        self.decode_cpu_s += (pc.sum(rows["decode_cpu_ms"]).as_py() or 0.0) / 1000

    @property
    def totals(self) -> dict:
        """Per-stage cost, as the run record stores it."""
        return {"decode_cpu_s": self.decode_cpu_s, "model_s": self.model_s, "footage_s": self.footage_s,
                "videos": self.processed}

    @property
    def rate_from_start(self) -> float:
        """Videos/s from the dataset's start to its last row: leaves out Ray start-up and planning.

        It includes starting the workers and loading the model, a fixed cost per run; a rate
        over part of the run would not be cleaner, as clips decoded while the model loads
        reach the output later in a burst.
        """
        if not self.output_times or not self.execution_started_at:
            return 0.0
        t1, n1 = self.output_times[-1]
        return n1 / (t1 - self.execution_started_at) if t1 > self.execution_started_at else 0.0

    @property
    def first_row_s(self) -> float:
        """Seconds from the dataset's start to the first labelled row: the per-run start-up."""
        if not self.output_times or not self.execution_started_at:
            return 0.0
        return self.output_times[0][0] - self.execution_started_at

    @property
    def error_rate(self) -> float:
        return self.error / self.processed if self.processed else 0.0


def run_record(settings: dict, run_id: str, *, model_name: str, weights_sha256: str, num_frames: int, mode: str,
               started: float) -> dict:
    """The run record at its start. ``settings``: the run's options (``dataclasses.asdict(JobConfig)``),
    recorded with the URLs redacted."""
    cfg = dict(settings, extensions=list(settings["extensions"]))
    for name in ("weights", "input_uri", "output_uri"):
        cfg[name] = redact_url(settings[name])
    return {
        "run_id": run_id, "status": "running", "started_at": iso(started), "config": cfg,
        "model": model_name, "weights_sha256": weights_sha256, "num_frames": num_frames, "mode": mode,
        "versions": {"python": platform.python_version(), "torch": _version("torch"), "ray": _version("ray"),
                     "pyarrow": pa.__version__},
        "host": platform.node(), "pid": os.getpid(), "boot_id": boot_id(),
        "pid_ns": pid_namespace(),
    }


def run_counts(summary: RunSummary) -> dict:
    totals = dict(summary.totals, wall_s=summary.elapsed_s or None)
    hours = (totals.get("footage_s") or 0) / 3600
    if hours:
        totals["decode_cpu_s_per_footage_h"] = totals.get("decode_cpu_s", 0) / hours
        totals["model_s_per_footage_h"] = totals.get("model_s", 0) / hours
    return {"totals": totals, "counts": {"listed": summary.listed, "skipped": summary.skipped, "to_label": summary.total,
                       "ok": summary.ok, "error": summary.error, "rows": summary.rows, "lost": summary.lost,
                       "commits": summary.commits, "rows_rewritten": summary.rewritten_rows},
            "timings": {"plan_s": round(summary.plan_s, 3), "commit_s": round(summary.commit_s, 3),
                        "wall_s": round(summary.elapsed_s, 3) if summary.elapsed_s else None},
            "error_kinds": summary.error_kinds, "placement": summary.placement,
            "videos_per_s_from_dataset_start": summary.rate_from_start, "first_row_s": summary.first_row_s}


def _version(package: str) -> str | None:
    # From the installed metadata: importing torch on the driver costs ~670 MB and seconds.
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
