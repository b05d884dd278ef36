"""The labelling job, top to bottom: plan -> decode (CPU) -> STAM (GPU/CPU) -> commit (Delta).

    plan.build(INPUT, OUTPUT)          Ray: list, anti-join with the current labels, sort,
                                       persist the plan as Parquet beside the run record
    ray.data.read_parquet(plan)        then the stages of jobs/stage_list.py, chained in order:
      .map_batches(to_work_items)      jobs/stages/records.py: the stage contract (Arrow schemas)
      .map_batches(expand_windows)     jobs/stages/windows.py, --window-seconds only
      .map_batches(decode_videos)      jobs/stages/decode.py: stam_core.read_clip -> uint8 frames
      .map_batches(Labeler)            jobs/stages/label.py: an actor pool holding the model
                                       (each in its Ray wrapper: jobs/ray_stages.py)
      .iter_batches()                  driver: whole videos -> Delta commits (jobs/commit.py),
                                       each commit's counts -> the RunSummary (jobs/runs.py)
    reconcile.lost_rows(...)           plan rows Ray never returned -> "lost" error rows, committed

Where each stage runs is jobs/placement.py (from the stage's kind); the run record and its heartbeat jobs/runs.py.
Every video ends as exactly one current row (or one row per window plus a video-level row):
failures inside a stage are caught per video; a block Ray gives up on is reconciled at the
end into "lost" rows, so nothing disappears silently. The driver holds no list of videos.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import time
from contextlib import contextmanager

from jobs import plan as planning
from jobs import ray_stages, reconcile, stage_list
from jobs.commit import Committer
from jobs.config import DECODE_CPU_S_PER_VIDEO, JobConfig, mode_of
from jobs.errors import JobError, JobFailed, JobInterrupted
from jobs.placement import connect_ray, stage_options, tolerate_faults
from jobs.progress import Progress
from jobs.runs import (
    RunRecord,
    RunSummary,
    new_run_id,
    plan_path,
    reap_dead_runs,
    remove_stale_temp_files,
    run_counts,
    run_record,
)
from jobs.schema import output_schema
from jobs.segments import VideoLevel
from jobs.stages.label import LabelParams
from jobs.stages.records import split_labelled
from jobs.storage import StorageError
from jobs.table import CommitError, LabelTable
from jobs.text import plural
from stam_core.classes import load_class_names
from stam_core.errors import CheckpointError
from stam_core.weights import redact_url

log = logging.getLogger("stam_label")

__all__ = ["JobConfig", "JobError", "RunSummary", "run_job"]

def run_job(config: JobConfig) -> RunSummary:
    """Plan, label and commit; raises JobError (cannot start), JobFailed, JobInterrupted."""
    # Without torch when the file allows: the driver's memory does not carry torch for the run.
    from stam_core.checkpoint_header import read_info

    started = time.time()
    run_id = new_run_id()
    table = LabelTable(config.output_uri, commit_timeout_s=config.commit_timeout_s)
    mode = mode_of(config)
    try:
        if table.is_legacy():
            raise JobError(f"{table.uri} holds a label table in the old layout (run_id=*/ folders); convert it "
                           f"first with: stam-label migrate {config.output_uri}")
        if not config.dry_run:
            table.check_writable()
            remove_stale_temp_files(table)
    except StorageError as exc:
        raise JobError(str(exc)) from exc
    try:
        info = read_info(config.weights, sha256=config.weights_sha256)
    except (CheckpointError, OSError, ValueError) as exc:
        raise JobError(f"weights {redact_url(config.weights)!r}: {redact_url(str(exc))}") from exc
    class_names = _class_names(config.labels_file, info.num_classes)
    model_name = config.model_name or info.name

    summary = RunSummary(run_id, config.output_uri, dry_run=config.dry_run)  # each commit's counts add up here
    if config.dry_run:
        return _dry_run(config, table, info, mode, summary, started)

    reap_dead_runs(table, run_id)
    record = RunRecord(table, run_record(dataclasses.asdict(config), run_id, model_name=model_name,
                                         weights_sha256=info.weights_sha256, num_frames=info.num_frames, mode=mode,
                                         started=started),
                       heartbeat_s=config.heartbeat_s).start()
    schema = output_schema(info.embed_dim if config.embeddings else 0, config.probs)
    video_level = VideoLevel(class_names, config.top_k, config.embeddings) if config.window_s is not None else None
    committer: Committer | None = None  # made with the progress, when the work starts
    try:
        with _signals_interrupt():
            try:
                plan_start = time.monotonic()
                plan, work = _plan(config, table, info.weights_sha256, mode, path=plan_path(table, run_id))
                summary.plan_s = time.monotonic() - plan_start
            except (StorageError, OSError) as exc:
                raise JobError(f"cannot plan the run: {exc}") from exc
            summary.listed, summary.skipped, summary.total = plan.listed, plan.skipped, plan.total
            record.update(plan={"listed": plan.listed, "skipped": plan.skipped, "to_label": plan.total,
                                "path": plan.path})
            log.info("run %s: %s listed, %d already labelled, %d to label", run_id,
                     plural(plan.listed, "video"), plan.skipped, plan.total)
            if plan.total:
                table.ensure_created(schema)
                summary.execution_started_at = time.time()
                with Progress(plan.total, interval_s=config.progress_interval_s, clock=time.time,
                              started=started) as progress:  # the run's one wall time
                    committer = Committer(table, run_id=run_id, schema=schema, commit_every=config.commit_every,
                                          commit_interval_s=config.commit_interval_s, video_level=video_level,
                                          on_videos=progress.update)
                    _label(config, work, committer, summary, info, class_names, model_name, run_id, mode)
                _reconcile(committer, summary, table, plan, run_id=run_id, mode=mode, batch_rows=config.commit_every)
    except KeyboardInterrupt:
        _commit_what_is_done(committer, summary)
        record.finish("interrupted", **_ended(summary, started))
        raise JobInterrupted(f"interrupted: {summary.processed} videos committed in {config.output_uri} "
                             f"(run {run_id}); rerun to label the rest") from None
    except CommitError as exc:
        record.finish("failed", reason=str(exc), **_ended(summary, started))
        raise JobFailed(str(exc)) from exc
    except JobError as exc:  # JobFailed too: what was committed before it is counted
        record.finish("failed", reason=str(exc), **_ended(summary, started))
        raise
    except Exception as exc:
        record.finish("failed", reason=f"{type(exc).__name__}: {redact_url(str(exc))[:500]}",
                      elapsed_s=time.time() - started)
        raise
    record.finish("completed", **_ended(summary, started))
    return summary


def _ended(summary: RunSummary, started: float) -> dict:
    """The run record's counts and timings at its end (the run's one wall time: from its start)."""
    summary.elapsed_s = time.time() - started
    return dict(run_counts(summary), elapsed_s=summary.elapsed_s)


def _plan(config: JobConfig, table: LabelTable, weights_sha256: str | None, mode: str, *, path: str | None):
    """The plan (jobs/plan.py) from the options it needs; ``path=None``: not persisted (a dry run).

    Ray starts (or is joined) only when the plan needs it: a rerun with nothing new to label in
    a small folder or prefix never starts it.
    """
    return planning.build(table, config.input_uri, extensions=config.extensions,
                          allow_local_paths=config.allow_local_paths, weights_sha256=weights_sha256, mode=mode,
                          relabel=config.relabel, limit=config.limit, videos_per_task=config.videos_per_task,
                          path=path, ray_ready=lambda: _connect_keeping_signals(config.address))


def _label(config: JobConfig, work, committer: Committer, summary: RunSummary, info, class_names: list[str],
           model_name: str, run_id: str, mode: str) -> None:
    """Run the dataset; each batch's rows go to the committer, their cost and each commit to ``summary``."""
    from ray.data.exceptions import ExecutionTimeoutError

    logged_precision = False
    tries = ray_stages.new_try_counter()  # bounds the tries of each batch (jobs/ray_stages.py)
    try:
        ds = _dataset(config, work, info, class_names, model_name, run_id, mode, tries)
        # Set on this run's datasets only (they share one DataContext, copied when the plan
        # was read), never on the caller's Ray session.
        tolerate_faults(ds.context, config)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                if not logged_precision and batch.num_rows:
                    log.info("model %s runs in %s (as the model actor reports)", model_name,
                             next((p for p in batch["precision"].to_pylist() if p), "?"))
                    logged_precision = True
                rows, facts = split_labelled(batch, committer.schema)
                summary.add_facts(rows, facts)
                summary.committed(committer.add_model_rows(rows, facts))
                summary.output_times.append((time.time(), committer.arrived))
        except ExecutionTimeoutError as exc:
            # Ray could place none of the remaining work (no node left with the resources a
            # stage asks for, and none came) for DataContext.execution_no_progress_timeout_s:
            # what came back is committed, and the end of the run records the rest as lost.
            # Ray Data turns this guard off for a pipeline holding an all-to-all step, so the
            # plan is split by a streaming repartition (a map step) to keep it.
            log.warning("Ray made no progress: %s; the videos not labelled are recorded as 'lost'",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        summary.committed(committer.finish_windows())
        summary.committed(committer.flush())
    finally:
        ray_stages.stop_try_counter(tries)


def _reconcile(committer: Committer, summary: RunSummary, table: LabelTable, plan, *, run_id: str, mode: str,
               batch_rows: int) -> None:
    """The step after labelling: planned videos that never came back are committed as "lost" rows."""
    lost = 0
    for rows in reconcile.lost_rows(table, plan, schema=committer.schema, run_id=run_id, mode=mode,
                                    batch_rows=batch_rows):
        summary.committed(committer.add(rows))
        lost += rows.num_rows
    summary.committed(committer.flush())
    reconcile.check_lost(lost, plan, run_id)
    summary.lost = lost


def _dataset(config: JobConfig, work, info, class_names, model_name: str, run_id: str, mode: str, tries):
    label = LabelParams.from_config(config, sha256=info.weights_sha256, class_names=class_names,
                                    model_name=model_name, run_id=run_id, mode=mode)
    return stage_list.chain(work, stage_list.stages(config, info, tries, label),
                            lambda stage: stage_options(stage, config))


def _commit_what_is_done(committer: Committer | None, summary: RunSummary) -> None:
    if committer is None:  # stopped before the work started: nothing to commit
        return
    try:
        summary.committed(committer.flush())
    except CommitError as exc:
        log.error("could not commit the last rows before stopping: %s", exc)


def _connect_keeping_signals(address: str | None) -> None:
    """connect_ray, called inside the run (when the plan first needs Ray), keeping the run's
    SIGTERM handler: ray.init installs its own, which exits at once (status 15) without
    committing what is labelled."""
    handler = signal.getsignal(signal.SIGTERM)
    connect_ray(address)
    if signal.getsignal(signal.SIGTERM) is not handler and handler is not None:
        signal.signal(signal.SIGTERM, handler)


@contextmanager
def _signals_interrupt():
    """SIGTERM (a scheduler stopping the pod) is handled like Ctrl-C: commit, record, exit 130."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dry_run(config: JobConfig, table: LabelTable, info, mode: str, summary: RunSummary,
             started: float) -> RunSummary:
    plan, _ = _plan(config, table, info.weights_sha256, mode, path=None)
    summary.listed, summary.skipped, summary.total = plan.listed, plan.skipped, plan.total
    summary.first_uris = plan.first
    summary.estimated_decode_cpu_h = plan.total * DECODE_CPU_S_PER_VIDEO / 3600
    summary.elapsed_s = time.time() - started
    return summary


def _class_names(labels_file: str | None, num_classes: int) -> list[str]:

    names = load_class_names(labels_file)
    if len(names) != num_classes:
        source = labels_file or "the Kinetics-400 list"
        raise JobError(f"{source} has {len(names)} class names but the checkpoint has {num_classes} classes")
    return names

