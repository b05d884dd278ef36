"""The labelling job, top to bottom: plan -> decode (CPU) -> STAM (GPU/CPU) -> commit (Delta).

    plan.build(INPUT, OUTPUT)          Ray: list, anti-join with the current labels, sort,
                                       persist the plan as Parquet beside the run record
    ray.data.read_parquet(plan)
      .map_batches(expand_windows)     CPU tasks, --window-seconds only: one item per window
      .map_batches(decode_videos)      CPU tasks: stam_core.read_clip -> uint8 frames
      .map_batches(Labeler)            actor pool holding the model -> label rows (Arrow)
      .iter_batches()                  driver: whole videos -> Delta commits (jobs.commit)
    plan.lost(...)                     plan rows Ray never returned -> "lost" error rows

Every video ends as exactly one current row (or one row per window plus a video-level row):
failures inside a stage are caught per video; a block Ray gives up on is reconciled at the
end into "lost" rows, so nothing disappears silently. The driver holds no list of videos.
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import platform
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from jobs import plan as planning
from jobs.commit import Committer, Counts
from jobs.errors import JobError, JobFailed, JobInterrupted
from jobs.runs import RunRecord, reap_dead_runs
from jobs.schema import output_schema
from jobs.segments import VIDEO_LEVEL, VideoLevel, plan_windows
from jobs.storage import DEFAULT_EXTENSIONS, StorageError
from jobs.table import CommitError, LabelTable, new_run_id
from stam_core.weights import redact_url

log = logging.getLogger("stam_label")

# Decoding yields the CPU to the model where they share a node: the model's threads wait for
# each other, so one preempted thread stalls them all, while decoding only has to keep up.
DECODE_NICENESS = 10
DEFAULT_MAX_PIXELS = 8192 * 4320  # 8K; larger streams are rejected from the header (too_large)
# Decode CPU-seconds per video, measured on 10-s 640x272 H.264 clips (docs/cluster.md): the
# --dry-run estimate. Real footage differs; the run record gives the measured figure.
DECODE_CPU_S_PER_VIDEO = 0.12

# Non-secret S3 settings forwarded to the workers of a cluster joined with --address.
# Credentials never travel: a local Ray's workers inherit the driver's environment, and a
# cluster's nodes use their own chain (instance role, IRSA, mounted profile).
FORWARDED_AWS_SETTINGS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


@dataclass
class JobConfig:
    input_uri: str
    output_uri: str
    weights: str = "stam_16"
    batch_size: int = 8
    top_k: int = 5
    precision: str = "auto"
    decode_workers: int | None = None  # cores to decode on, at most; None: every CPU Ray offers
    model_workers: int = 1
    gpus_per_worker: float = 1.0
    model_threads: int | None = None  # CPU inference threads; None: all cores of the node
    address: str | None = None
    limit: int | None = None  # the first N videos (URI order) that still need labelling
    max_error_rate: float = 0.5
    relabel: bool = False
    decode_timeout: float = 120.0
    decode_retries: int = 2
    videos_per_task: int = 8  # decode tasks take a few videos each: Ray's per-task cost is ~10s of ms
    decode_tasks_per_cpu: int = 2  # a second task per core keeps it busy while Ray schedules the next
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    commit_every: int = 2000  # rows per commit (also what a killed run can lose) ...
    commit_interval_s: float = 60.0  # ... or this long since the last commit, whichever first
    commit_timeout_s: float = 300.0  # a commit still failing after this long fails the run
    labels_file: str | None = None
    embeddings: bool = False
    probs: bool = False
    window_s: float | None = None
    stride_s: float | None = None
    model_name: str | None = None  # the `model` column; default: release name or the checkpoint's own
    weights_sha256: str | None = None  # optional pin of the weights file
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    resize: str = "exact"  # "fast": scale in YUV (not bit-exact; docs/decoding.md)
    allow_local_paths: bool = False  # local paths named by a manifest stored in S3
    dry_run: bool = False
    progress_interval_s: float = 30.0
    heartbeat_s: float = 60.0


@dataclass
class RunSummary:
    run_id: str
    output_uri: str
    listed: int = 0
    skipped: int = 0
    total: int = 0  # videos this run set out to label (the plan)
    ok: int = 0
    error: int = 0
    rows: int = 0
    commits: int = 0
    lost: int = 0
    elapsed_s: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    output_times: list[tuple[float, int]] = field(default_factory=list)  # (arrival, videos so far)
    placement: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> Ray node id -> clips
    execution_started_at: float = 0.0  # the plan is ready: the dataset starts
    dry_run: bool = False
    first_uris: list[str] = field(default_factory=list)  # --dry-run: the first videos to label
    estimated_decode_cpu_h: float = 0.0  # --dry-run
    totals: dict = field(default_factory=dict)  # per-stage cost: decode_cpu_s, model_s, footage_s, videos

    @property
    def files(self) -> list[str]:  # the old layout's per-file list; kept for callers that count it
        return []

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
    def processed(self) -> int:
        return self.ok + self.error

    @property
    def error_rate(self) -> float:
        return self.error / self.processed if self.processed else 0.0

    def take_counts(self, counts: Counts) -> None:
        self.ok, self.error, self.rows, self.commits = counts.ok, counts.error, counts.rows, counts.commits
        self.error_kinds, self.error_examples = dict(counts.error_kinds), dict(counts.error_examples)
        self.output_times, self.placement = counts.output_times, counts.placement
        self.totals = {"decode_cpu_s": counts.decode_cpu_s, "model_s": counts.model_s,
                       "footage_s": counts.footage_s, "videos": counts.processed}


ITEM_KEYS = ("video_uri", "source_size", "source_version", "segment_index", "num_segments", "start_s", "end_s")


# ---- stage -1: plan rows -> work items ----------------------------------------------------
def to_work_items(batch: pa.Table) -> dict[str, np.ndarray]:
    """Plan rows (nullable Arrow) -> the stages' fixed-dtype columns."""
    n = batch.num_rows
    size = batch["source_size"].to_pylist()
    return {
        "video_uri": np.asarray(batch["video_uri"].to_pylist(), dtype=object),
        "source_size": np.asarray([-1 if s is None else s for s in size], np.int64),
        "source_version": np.asarray([v or "" for v in batch["source_version"].to_pylist()], dtype=object),
        "segment_index": np.zeros(n, np.int32), "num_segments": np.ones(n, np.int32),
        "start_s": np.full(n, -1.0), "end_s": np.full(n, -1.0),
        "error": np.asarray([e or "" for e in batch["error"].to_pylist()], dtype=object),
        "error_kind": np.asarray([k or "" for k in batch["error_kind"].to_pylist()], dtype=object),
    }


# ---- stage 0 (segment mode only): one work item per window ---------------------------------
def expand_windows(batch: dict[str, np.ndarray], *, window: float, stride: float | None,
                   timeout: float, max_pixels: int | None) -> dict[str, np.ndarray]:
    from jobs.listing import local_path
    from stam_core import VideoError, probe_video

    _lower_priority()
    out: dict[str, list] = collections.defaultdict(list)
    for i in range(len(batch["video_uri"])):
        item = {k: batch[k][i] for k in batch}
        try:
            if item["error_kind"]:  # failed in listing: its one row is video-level
                raise VideoError(str(item["video_uri"]), "")
            probe = probe_video(local_path(str(item["video_uri"])), timeout=timeout, max_pixels=max_pixels)
            windows = plan_windows(probe.duration_s, window, stride)
            if not windows:
                raise VideoError(str(item["video_uri"]), "zero duration: nothing to window")
        except VideoError as exc:
            # Failed before windowing: one video-level error row carries the reason.
            if not item["error_kind"]:
                item.update(error=str(exc), error_kind=exc.kind)
            item.update(segment_index=VIDEO_LEVEL)
            windows = [(-1.0, -1.0)]
        for k, (start, end) in enumerate(windows):
            row = dict(item)
            if start >= 0:
                row.update(segment_index=k, start_s=start, end_s=end, num_segments=len(windows))
            for key, value in row.items():
                out[key].append(value)
    return {k: np.asarray(v) for k, v in out.items()}


# ---- stage 1: decode and sample (stateless, CPU) -----------------------------------------
def decode_videos(batch: dict[str, np.ndarray], *, num_frames: int, timeout: float,
                  max_pixels: int | None, resize: str = "exact") -> dict[str, np.ndarray]:
    from jobs.listing import local_path
    from stam_core import VideoError, read_clip

    _lower_priority()  # before read_clip starts its decode worker process, which inherits it
    n = len(batch["video_uri"])
    frames = np.zeros((n, num_frames, 224, 224, 3), dtype=np.uint8)
    out: dict[str, list] = collections.defaultdict(list)
    for i in range(n):
        uri = str(batch["video_uri"][i])
        start, end = float(batch["start_s"][i]), float(batch["end_s"][i])
        if batch["error_kind"][i]:  # failed in an earlier stage: pass the reason on
            _append_decode(out, ok=False, error=str(batch["error"][i]), error_kind=str(batch["error_kind"][i]))
            continue
        try:
            clip = read_clip(local_path(uri), num_frames, start=None if start < 0 else start,
                             end=None if end < 0 else end, timeout=timeout, max_pixels=max_pixels,
                             resize=resize)
        except VideoError as exc:
            _append_decode(out, ok=False, error=str(exc), error_kind=exc.kind)
            continue
        frames[i] = clip.frames
        info = clip.info
        _append_decode(out, ok=True, error="", error_kind="", duration_s=info.duration_s, fps=info.fps,
                       width=info.width, height=info.height, codec=info.codec, decoder=info.decoder,
                       frame_indices=np.asarray(clip.indices, np.int32),
                       frame_timestamps=np.asarray(clip.timestamps, np.float64),
                       warnings="\n".join(clip.warnings or ()), resize=clip.resize,
                       decode_cpu_ms=clip.decode_cpu_ms)
    result = {k: np.asarray(v) for k, v in out.items() if k not in ("frame_indices", "frame_timestamps")}
    # Fixed dtypes and widths: Ray must be able to concatenate blocks from different tasks.
    result["frame_indices"] = _stack(out["frame_indices"], num_frames, np.int32)
    result["frame_timestamps"] = _stack(out["frame_timestamps"], num_frames, np.float64)
    for key in ITEM_KEYS:
        result[key] = batch[key]
    result["frames"] = frames
    result["_decode_node"] = np.full(n, _node_id())
    return result


def _lower_priority() -> None:
    if hasattr(os, "setpriority"):  # absolute, so a reused Ray worker does not sink further
        os.setpriority(os.PRIO_PROCESS, 0, max(DECODE_NICENESS, os.getpriority(os.PRIO_PROCESS, 0)))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _append_decode(out, *, ok, error, error_kind, duration_s=np.nan, fps=np.nan, width=-1, height=-1,
                   codec="", decoder="", frame_indices=None, frame_timestamps=None, warnings="", resize="",
                   decode_cpu_ms=np.nan):
    for key, value in (("ok", ok), ("error", error), ("error_kind", error_kind), ("duration_s", duration_s),
                       ("fps", fps), ("width", width), ("height", height), ("codec", codec),
                       ("decoder", decoder), ("frame_indices", frame_indices),
                       ("frame_timestamps", frame_timestamps), ("warnings", warnings), ("resize", resize),
                       ("decode_cpu_ms", decode_cpu_ms)):
        out[key].append(value)


def _stack(values: list, num_frames: int, dtype) -> np.ndarray:
    # Error rows carry -1 here and become nulls in the Labeler.
    return np.stack([np.full(num_frames, -1, dtype) if v is None else np.asarray(v, dtype) for v in values])


# ---- stage 2: the model (stateful, GPU or CPU) -------------------------------------------
class Labeler:
    """Holds one model; turns decoded batches into finished label rows (Arrow tables)."""

    def __init__(self, *, weights: str, sha256: str | None, precision: str, top_k: int, class_names: list[str],
                 model_name: str, run_id: str, mode: str, embeddings: bool, probs: bool, threads: int | None):
        # Idle OpenMP threads sleep instead of spinning (read when torch loads): on a CPU node
        # a spinning model thread burns the core that decoding needs. Users may override it.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        import stam_core

        if not torch.cuda.is_available():
            # Ray pins OMP threads to the actor's CPU share; on a CPU node the model should use
            # the cores it timeshares with decoding, as the sizing guide assumes.
            torch.set_num_threads(threads or os.cpu_count() or 1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = stam_core.load_model(weights, device=device, precision=precision, sha256=sha256)
        self.torch = torch
        self.clips_to_tensor = stam_core.clips_to_tensor
        self.top_k = min(top_k, self.model.num_classes)
        self.class_names = class_names
        self.schema = output_schema(self.model.embed_dim if embeddings else 0, probs)
        self.static = {"model": model_name, "weights_sha256": sha256, "precision": self.model.precision,
                       "run_id": run_id, "mode": mode}
        self.embeddings, self.probs = embeddings, probs
        self.windowed = mode != "video"
        # Rows carry self.model.precision; the driver logs it once from the first batch.
        log.info("model %s loaded on %s, precision %s (requested %s)", model_name, device,
                 self.model.precision, precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = batch["ok"].astype(bool)
        n = len(ok)
        probs = embeds = None
        started = time.perf_counter()
        if ok.any():
            clips = self.clips_to_tensor(batch["frames"][ok], self.model.device)
            with self.torch.inference_mode():
                feats = self.model.forward_features(clips)
                logits = self.model.head(feats.to(self.model.head.weight.dtype)).float()
                probs = self.torch.softmax(logits, dim=-1).cpu().numpy()
                embeds = feats.float().cpu().numpy()  # .cpu() waits for the GPU: the time is the model's
        model_s = time.perf_counter() - started
        rows = {name: [] for name in ("labels", "scores", "class_ids", "embedding", "probs")}
        j = 0
        for i in range(n):
            if not ok[i]:
                for name in rows:
                    rows[name].append(None)
                continue
            p = probs[j]
            top = np.argsort(-p, kind="stable")[: self.top_k]
            rows["labels"].append([self.class_names[c] for c in top])
            rows["scores"].append(p[top].astype(np.float32))
            rows["class_ids"].append(top.astype(np.int32))
            rows["embedding"].append(embeds[j])
            rows["probs"].append(p.astype(np.float32))
            j += 1
        now = dt.datetime.now(dt.timezone.utc)
        seg_starts, seg_ends = _segment_bounds(batch, ok)
        columns = {
            "video_uri": batch["video_uri"],
            "segment_index": batch["segment_index"],
            "segment_start_s": seg_starts,
            "segment_end_s": seg_ends,
            "status": np.where(ok, "ok", "error"),
            "error": [None if k else str(e) for k, e in zip(ok, batch["error"])],
            "error_kind": [None if k else str(e) for k, e in zip(ok, batch["error_kind"])],
            "labels": rows["labels"], "scores": rows["scores"], "class_ids": rows["class_ids"],
            "label": [v[0] if v else None for v in rows["labels"]],
            "score": [float(v[0]) if v is not None and len(v) else None for v in rows["scores"]],
            "duration_s": _null_where(batch["duration_s"], ok),
            "fps": _null_where(batch["fps"], ok),
            "width": _null_where(batch["width"], ok), "height": _null_where(batch["height"], ok),
            "codec": _null_where(batch["codec"], ok),
            "frame_indices": [list(v) if k else None for k, v in zip(ok, batch["frame_indices"])],
            "frame_timestamps": [list(v) if k else None for k, v in zip(ok, batch["frame_timestamps"])],
            "decoder": _null_where(batch["decoder"], ok),
            "warnings": [str(w).split("\n") if k and w else None for k, w in zip(ok, batch["warnings"])],
            "resize": _null_where(batch["resize"], ok),
            "decode_cpu_ms": [None if np.isnan(v) else float(v) for v in batch["decode_cpu_ms"]],
            "source_size": [None if s < 0 else int(s) for s in batch["source_size"]],
            "source_version": [str(v) or None for v in batch["source_version"]],
            "labelled_at": [now] * n,
        }
        for key, value in self.static.items():
            columns[key] = [value] * n
        if self.embeddings:
            columns["embedding"] = rows["embedding"]
        if self.probs:
            columns["probs"] = rows["probs"]
        table = pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in self.schema}, schema=self.schema)
        # Where each stage ran, for the run manifest; never written to the table.
        table = table.append_column("_decode_node", pa.array(batch["_decode_node"], pa.string()))
        table = table.append_column("_model_node", pa.array([_node_id()] * n, pa.string()))
        table = table.append_column("_model_s", pa.array([model_s / n] * n, pa.float64()))  # its share of the batch
        if self.windowed:
            # For the driver's video-level row only; never written.
            table = table.append_column("_num_segments", pa.array(batch["num_segments"], pa.int32()))
            table = table.append_column("_probs", pa.array(rows["probs"], pa.list_(pa.float32())))
        return table


def _null_where(values: np.ndarray, ok: np.ndarray) -> list:
    return [(v.item() if isinstance(v, np.generic) else v) if k else None for k, v in zip(ok, values)]


def _segment_bounds(batch: dict[str, np.ndarray], ok: np.ndarray) -> tuple[list, list]:
    """Window bounds as requested (end clipped to the video); whole-video rows span 0..duration."""
    starts, ends = [], []
    for k, s, e, d in zip(ok, batch["start_s"], batch["end_s"], batch["duration_s"]):
        starts.append(float(s) if s >= 0 else (0.0 if k else None))
        if e >= 0:
            ends.append(float(min(e, d)) if k else float(e))
        else:
            ends.append(float(d) if k else None)
    return starts, ends


# ---- the job -------------------------------------------------------------------------------
def run_job(config: JobConfig) -> RunSummary:
    """Plan, label and commit; raises JobError (cannot start), JobFailed, JobInterrupted."""
    import stam_core

    started = time.time()
    run_id = new_run_id()
    table = LabelTable(config.output_uri, commit_timeout_s=config.commit_timeout_s)
    mode = _mode(config)
    try:
        if table.is_legacy():
            raise JobError(f"{table.uri} holds a label table in the old layout (run_id=*/ folders); convert it "
                           f"first with: stam-label migrate {config.output_uri}")
        if not config.dry_run:
            table.check_writable()
            table.remove_stale_temp_files()
    except StorageError as exc:
        raise JobError(str(exc)) from exc
    try:
        info = stam_core.read_checkpoint_info(config.weights, sha256=config.weights_sha256)
    except (stam_core.CheckpointError, OSError, ValueError) as exc:
        raise JobError(f"weights {redact_url(config.weights)!r}: {redact_url(str(exc))}") from exc
    class_names = _class_names(config.labels_file, info.num_classes)
    model_name = config.model_name or info.name

    _connect_ray(config.address)
    summary = RunSummary(run_id, config.output_uri, dry_run=config.dry_run)
    if config.dry_run:
        return _dry_run(config, table, info, mode, run_id, summary, started)

    reap_dead_runs(table, run_id)
    record = RunRecord(table, _record(config, run_id, info, model_name, mode, started),
                       heartbeat_s=config.heartbeat_s).start()
    schema = output_schema(info.embed_dim if config.embeddings else 0, config.probs)
    committer = Committer(table, run_id=run_id, schema=schema, commit_every=config.commit_every,
                          commit_interval_s=config.commit_interval_s,
                          video_level=VideoLevel(class_names, config.top_k, config.embeddings)
                          if config.window_s is not None else None)
    try:
        with _signals_interrupt():
            try:
                plan, work = planning.build(config, table, info.weights_sha256, mode, run_id)
            except (StorageError, OSError) as exc:
                raise JobError(f"cannot plan the run: {exc}") from exc
            summary.listed, summary.skipped, summary.total = plan.listed, plan.skipped, plan.total
            record.update(plan={"listed": plan.listed, "skipped": plan.skipped, "to_label": plan.total,
                                "path": plan.path})
            log.info("run %s: %d videos listed, %d already labelled, %d to label", run_id, plan.listed,
                     plan.skipped, plan.total)
            if plan.total:
                table.ensure_created(schema)
                summary.execution_started_at = time.time()
                _label(config, work, committer, info, class_names, model_name, run_id, mode, plan.total)
                summary.lost = _reconcile(config, table, committer, plan, run_id, mode)
    except KeyboardInterrupt:
        _commit_what_is_done(committer)
        summary.take_counts(committer.counts)
        record.finish("interrupted", **_counts(summary), elapsed_s=time.time() - started)
        raise JobInterrupted(f"interrupted: {summary.processed} videos committed in {config.output_uri} "
                             f"(run {run_id}); rerun to label the rest") from None
    except CommitError as exc:
        summary.take_counts(committer.counts)
        record.finish("failed", reason=str(exc), **_counts(summary), elapsed_s=time.time() - started)
        raise JobFailed(str(exc)) from exc
    except JobError as exc:
        record.finish("failed", reason=str(exc), elapsed_s=time.time() - started)
        raise
    except Exception as exc:
        record.finish("failed", reason=f"{type(exc).__name__}: {redact_url(str(exc))[:500]}",
                      elapsed_s=time.time() - started)
        raise
    summary.take_counts(committer.counts)
    summary.elapsed_s = time.time() - started
    record.finish("completed", **_counts(summary), elapsed_s=summary.elapsed_s)
    return summary


def _label(config: JobConfig, work, committer: Committer, info, class_names: list[str], model_name: str,
           run_id: str, mode: str, total: int) -> None:
    from jobs.progress import Progress

    ds = _dataset(config, work, info, class_names, model_name, run_id, mode)
    progress = Progress(total, interval_s=config.progress_interval_s)
    committer.on_videos = lambda ok, error: progress.update(ok=ok, error=error)
    logged_precision = False
    with progress:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if not logged_precision and batch.num_rows:
                log.info("model %s runs in %s (as the model actor reports)", model_name,
                         next((p for p in batch["precision"].to_pylist() if p), "?"))
                logged_precision = True
            committer.add_model_rows(batch)
        committer.finish_windows()
        committer.flush()


def _dataset(config: JobConfig, work, info, class_names, model_name: str, run_id: str, mode: str):
    import ray

    resources = ray.cluster_resources()
    from stam_core.decode_worker import decode_memory_limit

    decode_args = {"num_cpus": 1 / config.decode_tasks_per_cpu, "max_retries": config.decode_retries}
    limit = decode_memory_limit(config.max_pixels)
    if limit:
        # Each decode task's worker process may use this much (its RLIMIT_DATA): Ray places no
        # more tasks on a node than its memory holds, so hostile files cannot take a node down.
        decode_args["memory"] = limit
    if resources.get("stam_decode", 0) > 0:
        # Keep decoding off the GPU nodes; stam_decode counts CPUs like num_cpus does.
        decode_args["resources"] = {"stam_decode": decode_args["num_cpus"]}
    decode_concurrency = config.decode_workers * config.decode_tasks_per_cpu if config.decode_workers else None
    model_args = {"max_restarts": 2, "max_task_retries": 2}
    if resources.get("GPU", 0) > 0:
        model_args.update(num_gpus=config.gpus_per_worker, num_cpus=1)
    else:
        # Without GPUs the model timeshares the cores with decoding (its threads are set in
        # Labeler); reserving CPUs for it would idle them whenever it waits for clips.
        model_args["num_cpus"] = 0

    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = -1  # failed blocks are reconciled into "lost" rows at the end
    ds = work.map_batches(to_work_items, batch_format="pyarrow", batch_size=None)
    if config.window_s is not None:
        ds = ds.map_batches(  # a video per task: each becomes many windows, decoded videos_per_task at a time
            expand_windows, batch_size=1, concurrency=decode_concurrency, **decode_args,
            fn_kwargs={"window": config.window_s, "stride": config.stride_s, "timeout": config.decode_timeout,
                       "max_pixels": config.max_pixels},
        )
    ds = ds.map_batches(
        decode_videos, batch_size=config.videos_per_task,
        fn_kwargs={"num_frames": info.num_frames, "timeout": config.decode_timeout, "max_pixels": config.max_pixels,
                   "resize": config.resize},
        concurrency=decode_concurrency, **decode_args,
    )
    return ds.map_batches(
        Labeler, batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=config.model_workers),
        fn_constructor_kwargs={
            "weights": config.weights, "sha256": info.weights_sha256, "precision": config.precision,
            "top_k": config.top_k, "class_names": class_names, "model_name": model_name,
            "run_id": run_id, "mode": mode, "embeddings": config.embeddings, "probs": config.probs,
            "threads": config.model_threads,
        },
        **model_args,
    )


def _reconcile(config: JobConfig, table: LabelTable, committer: Committer, plan, run_id: str, mode: str) -> int:
    """Plan rows that produced no row (Ray gave up on their tasks) become "lost" error rows."""
    if planning.written_since(table, plan, run_id, mode) >= plan.total:
        return 0  # every planned video has a row from this run: nothing lost, no join needed
    missing = planning.lost(table, plan, mode)
    lost = 0
    for batch in missing.iter_batches(batch_size=config.commit_every, batch_format="pyarrow"):
        committer.add(_lost_rows(batch, committer.schema, run_id, config))
        lost += batch.num_rows
    committer.flush()
    if lost:
        log.warning("%d videos produced no row (their Ray tasks failed past retries): recorded as 'lost'", lost)
    if plan.total and lost == plan.total:
        # Not bad videos: the pipeline itself is broken (see the task errors above).
        raise JobFailed(f"every Ray task failed; no video was labelled (run {run_id}, see the log above)")
    return lost


def _commit_what_is_done(committer: Committer) -> None:
    try:
        committer.flush()
    except CommitError as exc:
        log.error("could not commit the last rows before stopping: %s", exc)


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


def _dry_run(config: JobConfig, table: LabelTable, info, mode: str, run_id: str, summary: RunSummary,
             started: float) -> RunSummary:
    plan, work = planning.build(config, table, info.weights_sha256, mode, run_id, persist=False)
    summary.listed, summary.skipped, summary.total = plan.listed, plan.skipped, plan.total
    summary.first_uris = [] if work is None else [r["video_uri"] for r in work.take(10)]
    summary.estimated_decode_cpu_h = plan.total * DECODE_CPU_S_PER_VIDEO / 3600
    summary.elapsed_s = time.time() - started
    return summary


def _lost_rows(lost: pa.Table, schema: pa.Schema, run_id: str, config: JobConfig) -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    level = 0 if config.window_s is None else -1
    return pa.Table.from_pylist([{
        "video_uri": it["video_uri"], "mode": _mode(config), "segment_index": level, "status": "error",
        "error": f"{it['video_uri']}: its Ray task failed {config.decode_retries + 1} times; no result",
        "error_kind": "lost", "source_size": it["source_size"], "source_version": it["source_version"],
        "run_id": run_id, "labelled_at": now,
    } for it in lost.to_pylist()], schema=schema)


def _mode(config: JobConfig) -> str:
    if config.window_s is None:
        return "video"
    return f"window={config.window_s:g},stride={(config.stride_s or config.window_s):g}"


def _class_names(labels_file: str | None, num_classes: int) -> list[str]:
    import stam_core

    names = list(stam_core.read_class_names(labels_file) if labels_file else stam_core.KINETICS400_CLASSES)
    if len(names) != num_classes:
        source = labels_file or "the Kinetics-400 list"
        raise JobError(f"{source} has {len(names)} class names but the checkpoint has {num_classes} classes")
    return names


def _connect_ray(address: str | None) -> None:
    import ray

    from jobs.logs import local_ray_auth_mode, quiet_ray

    if ray.is_initialized():
        quiet_ray()
        return  # the caller's Ray (a notebook, a test): its workers already have their settings
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        local_ray_auth_mode()
    runtime_env = None
    if address:
        # A cluster: forward only non-secret settings; its nodes bring their own credentials.
        env = {k: os.environ[k] for k in FORWARDED_AWS_SETTINGS if k in os.environ}
        log.info("forwarding AWS settings to Ray workers: %s", ", ".join(sorted(env)) or "none")
        runtime_env = {"env_vars": env} if env else None
    try:
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise JobError(f"cannot reach Ray at {address}: {exc}") from exc
    quiet_ray()


def _record(config: JobConfig, run_id: str, info, model_name: str, mode: str, started: float) -> dict:
    import ray
    import torch

    cfg = asdict(config)
    cfg["extensions"] = list(config.extensions)
    cfg["weights"] = redact_url(config.weights)
    cfg["input_uri"] = redact_url(config.input_uri)
    cfg["output_uri"] = redact_url(config.output_uri)
    return {
        "run_id": run_id, "status": "running", "started_at": _iso(started), "config": cfg,
        "model": model_name, "weights_sha256": info.weights_sha256, "num_frames": info.num_frames, "mode": mode,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                     "pyarrow": pa.__version__},
        "host": platform.node(), "pid": os.getpid(),
    }


def _counts(summary: RunSummary) -> dict:
    totals = dict(summary.totals, wall_s=summary.elapsed_s or None)
    hours = (totals.get("footage_s") or 0) / 3600
    if hours:
        totals["decode_cpu_s_per_footage_h"] = totals.get("decode_cpu_s", 0) / hours
        totals["model_s_per_footage_h"] = totals.get("model_s", 0) / hours
    return {"totals": totals, "counts": {"listed": summary.listed, "skipped": summary.skipped, "to_label": summary.total,
                       "ok": summary.ok, "error": summary.error, "rows": summary.rows, "lost": summary.lost,
                       "commits": summary.commits},
            "error_kinds": summary.error_kinds, "placement": summary.placement,
            "videos_per_s_from_dataset_start": summary.rate_from_start, "first_row_s": summary.first_row_s}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
