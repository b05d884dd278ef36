"""The labelling job, top to bottom: list -> decode (CPU) -> STAM (GPU/CPU) -> commit Parquet.

    videos = list_videos(INPUT) - already labelled          (driver)
    ray.data.from_items(videos)
      .map_batches(expand_windows)     CPU tasks, --window-seconds only: one item per window
      .map_batches(decode_videos)      CPU tasks: stam_core.read_clip -> uint8 frames
      .map_batches(Labeler)            actor pool holding the model -> label rows (Arrow)
      .iter_batches()                  driver commits rows to OUTPUT in whole Parquet files

Every video ends as exactly one row (or one row per window): failures inside a stage are
caught per video; a block Ray gives up on (a worker that died past its retries) is
reconciled at the end into "lost" error rows, so nothing disappears silently.
"""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from jobs import storage
from jobs.schema import output_schema
from jobs.segments import VIDEO_LEVEL, VideoLevel, plan_windows
from jobs.storage import DEFAULT_EXTENSIONS, VideoRef, list_videos
from jobs.table import LabelTable, new_run_id

log = logging.getLogger("stam_label")

# Bounded task retries (max_retries) can only be passed to map_batches as ray_remote_args,
# which Ray deprecates; pyproject keeps Ray below 2.64, where it goes.
warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")

# Decoding yields the CPU to the model where they share a node: the model's threads wait for
# each other, so one preempted thread stalls them all, while decoding only has to keep up.
DECODE_NICENESS = 10


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
    limit: int | None = None
    max_error_rate: float = 1.0
    relabel: bool = False
    decode_timeout: float = 120.0
    decode_retries: int = 2
    videos_per_task: int = 8  # decode tasks take a few videos each: Ray's per-task cost is ~10s of ms
    decode_tasks_per_cpu: int = 2  # a second task per core keeps it busy while Ray schedules the next
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    rows_per_file: int = 2000
    labels_file: str | None = None
    embeddings: bool = False
    probs: bool = False
    window_s: float | None = None
    stride_s: float | None = None
    model_name: str | None = None  # shown in the `model` column; default "stam_<T>"
    weights_sha256: str | None = None  # optional pin of the weights file


@dataclass
class RunSummary:
    run_id: str
    output_uri: str
    listed: int = 0
    skipped: int = 0
    ok: int = 0
    error: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    output_times: list[tuple[float, int]] = field(default_factory=list)  # (arrival, videos so far)
    placement: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> Ray node id -> clips

    execution_started_at: float = 0.0  # Ray connected, videos listed: the dataset starts

    @property
    def rate_from_start(self) -> float:
        """Videos/s from the dataset's start to its last row: leaves out Ray start-up and listing.

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


class JobError(Exception):
    """The run cannot start or cannot finish; the message is one line for the user."""


ITEM_KEYS = ("video_uri", "source_size", "source_version", "segment_index", "num_segments", "start_s", "end_s")


# ---- stage 0 (segment mode only): one work item per window ---------------------------------
def expand_windows(batch: dict[str, np.ndarray], *, window: float, stride: float | None,
                   timeout: float) -> dict[str, np.ndarray]:
    from stam_core import VideoError, probe_video

    _lower_priority()
    out: dict[str, list] = collections.defaultdict(list)
    for i in range(len(batch["video_uri"])):
        item = {k: batch[k][i] for k in batch}
        try:
            windows = plan_windows(probe_video(str(item["video_uri"]), timeout=timeout).duration_s, window, stride)
            if not windows:
                raise VideoError(str(item["video_uri"]), "zero duration: nothing to window")
        except VideoError as exc:
            # Failed before windowing: one video-level error row carries the reason.
            item.update(segment_index=VIDEO_LEVEL, error=str(exc), error_kind=exc.kind)
            windows = [(-1.0, -1.0)]
        for k, (start, end) in enumerate(windows):
            row = dict(item)
            if start >= 0:
                row.update(segment_index=k, start_s=start, end_s=end, num_segments=len(windows))
            for key, value in row.items():
                out[key].append(value)
    return {k: np.asarray(v) for k, v in out.items()}


# ---- stage 1: decode and sample (stateless, CPU) -----------------------------------------
def decode_videos(batch: dict[str, np.ndarray], *, num_frames: int, timeout: float) -> dict[str, np.ndarray]:
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
            clip = read_clip(uri, num_frames, start=None if start < 0 else start,
                             end=None if end < 0 else end, timeout=timeout)
        except VideoError as exc:
            _append_decode(out, ok=False, error=str(exc), error_kind=exc.kind)
            continue
        frames[i] = clip.frames
        info = clip.info
        _append_decode(out, ok=True, error="", error_kind="", duration_s=info.duration_s, fps=info.fps,
                       width=info.width, height=info.height, codec=info.codec, decoder=info.decoder,
                       frame_indices=np.asarray(clip.indices, np.int32),
                       frame_timestamps=np.asarray(clip.timestamps, np.float64))
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
                   codec="", decoder="", frame_indices=None, frame_timestamps=None):
    for key, value in (("ok", ok), ("error", error), ("error_kind", error_kind), ("duration_s", duration_s),
                       ("fps", fps), ("width", width), ("height", height), ("codec", codec),
                       ("decoder", decoder), ("frame_indices", frame_indices),
                       ("frame_timestamps", frame_timestamps)):
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
        log.info("model loaded on %s, precision %s", device, self.model.precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = batch["ok"].astype(bool)
        n = len(ok)
        probs = embeds = None
        if ok.any():
            clips = self.clips_to_tensor(batch["frames"][ok], self.model.device)
            with self.torch.inference_mode():
                feats = self.model.forward_features(clips)
                logits = self.model.head(feats.to(self.model.head.weight.dtype)).float()
                probs = self.torch.softmax(logits, dim=-1).cpu().numpy()
                embeds = feats.float().cpu().numpy()
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
            "duration_s": _null_where(batch["duration_s"], ok),
            "fps": _null_where(batch["fps"], ok),
            "width": _null_where(batch["width"], ok), "height": _null_where(batch["height"], ok),
            "codec": _null_where(batch["codec"], ok),
            "frame_indices": [list(v) if k else None for k, v in zip(ok, batch["frame_indices"])],
            "frame_timestamps": [list(v) if k else None for k, v in zip(ok, batch["frame_timestamps"])],
            "decoder": _null_where(batch["decoder"], ok),
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
    import ray

    import stam_core

    started = time.time()
    run_id = new_run_id()
    table = LabelTable(config.output_uri)
    table.check_writable()
    table.remove_stale_temp_files()

    # Validate the weights once on the driver: a bad file fails the run before any work.
    try:
        probe = stam_core.load_model(config.weights, device="cpu", precision="fp32", sha256=config.weights_sha256)
    except (stam_core.CheckpointError, OSError, ValueError) as exc:
        raise JobError(f"weights {config.weights!r}: {exc}") from exc
    num_frames, num_classes, sha256 = probe.num_frames, probe.num_classes, probe.weights_sha256
    embed_dim = probe.embed_dim
    del probe
    class_names = _class_names(config.labels_file, num_classes)
    model_name = config.model_name or f"stam_{num_frames}"
    mode = _mode(config)

    try:
        videos = list_videos(config.input_uri, config.extensions)
    except storage.StorageError as exc:
        raise JobError(str(exc)) from exc
    if config.limit is not None:
        videos = videos[: config.limit]
    done = set() if config.relabel else table.done_keys(sha256, mode)
    todo = [v for v in videos if (v.uri, v.version) not in done]
    summary = RunSummary(run_id, config.output_uri, listed=len(videos), skipped=len(videos) - len(todo))
    manifest = _manifest(config, run_id, sha256, model_name, mode, num_frames, started)
    table.write_manifest(run_id, manifest)
    log.info("run %s: %d videos listed, %d already labelled, %d to label", run_id, len(videos),
             summary.skipped, len(todo))

    if todo:
        _connect_ray(config.address)
        items = _work_items(todo)
        resources = ray.cluster_resources()
        decode_args = {"num_cpus": 1 / config.decode_tasks_per_cpu, "max_retries": config.decode_retries}
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
        ctx.max_errored_blocks = -1  # failed blocks are reconciled into "lost" rows below
        blocks = min(-(-len(items) // config.videos_per_task), 100_000)
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        if config.window_s is not None:
            ds = ds.map_batches(
                expand_windows, batch_size=config.videos_per_task, concurrency=decode_concurrency, **decode_args,
                fn_kwargs={"window": config.window_s, "stride": config.stride_s, "timeout": config.decode_timeout},
            )
        ds = ds.map_batches(
            decode_videos, batch_size=config.videos_per_task,
            fn_kwargs={"num_frames": num_frames, "timeout": config.decode_timeout},
            concurrency=decode_concurrency, **decode_args,
        )
        ds = ds.map_batches(
            Labeler, batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=config.model_workers),
            fn_constructor_kwargs={
                "weights": config.weights, "sha256": sha256, "precision": config.precision,
                "top_k": config.top_k, "class_names": class_names, "model_name": model_name,
                "run_id": run_id, "mode": mode, "embeddings": config.embeddings, "probs": config.probs,
                "threads": config.model_threads,
            },
            **model_args,
        )
        video_level = VideoLevel(class_names, config.top_k) if config.window_s is not None else None
        summary.execution_started_at = time.time()
        _commit_stream(ds.iter_batches(batch_size=None, batch_format="pyarrow"), table, config, summary, items,
                       video_level, embed_dim)

    summary.elapsed_s = time.time() - started
    manifest.update(_counts(summary), finished_at=_now(), status="completed", elapsed_s=summary.elapsed_s)
    table.write_manifest(run_id, manifest)
    return summary


def _commit_stream(batches, table: LabelTable, config: JobConfig, summary: RunSummary, items: list[dict],
                   video_level: VideoLevel | None, embed_dim: int) -> None:
    """Write rows as they arrive, whole files at a time; then turn what never came into rows."""
    schema = output_schema(embed_dim if config.embeddings else 0, config.probs)
    pending: list[pa.Table] = []
    buffered = 0
    seen: set[tuple[str, int]] = set()

    def add(rows: pa.Table) -> None:
        nonlocal buffered
        _count(summary, rows, VIDEO_LEVEL if video_level else 0)
        pending.append(rows)
        buffered += rows.num_rows
        if buffered >= config.rows_per_file:
            flush()

    def flush() -> None:
        nonlocal buffered
        if pending:
            part = pa.concat_tables(pending)
            summary.files.append(table.write_part(summary.run_id, len(summary.files), part))
            pending.clear()
            buffered = 0

    for batch in batches:
        keys = list(zip(batch["video_uri"].to_pylist(), batch["segment_index"].to_pylist()))
        fresh = [k not in seen for k in keys]  # a retried task must not write a row twice
        seen.update(keys)
        batch = batch.filter(pa.array(fresh)) if not all(fresh) else batch
        for stage in ("decode", "model"):
            clips_on = summary.placement.setdefault(stage, {})
            for node in batch[f"_{stage}_node"].to_pylist():
                clips_on[node] = clips_on.get(node, 0) + 1
        videos = video_level.add(batch) if video_level else []
        add(batch.select(schema.names).cast(schema))
        if videos:
            add(pa.Table.from_pylist(videos, schema=schema))
        summary.output_times.append((time.time(), summary.processed))
    if video_level:
        leftovers = video_level.flush()
        if leftovers:
            add(pa.Table.from_pylist(leftovers, schema=schema))
    labelled = {uri for uri, _ in seen}
    lost = [it for it in items if it["video_uri"] not in labelled]
    if lost:
        log.warning("%d videos produced no row (their Ray tasks failed past retries)", len(lost))
        add(_lost_rows(lost, schema, summary.run_id, config))
    flush()
    if items and len(lost) == len(items):
        # Not bad videos: the pipeline itself is broken (see the task errors above).
        raise JobError(f"every Ray task failed; no video was labelled (run {summary.run_id}, see the log above)")


def _lost_rows(lost: list[dict], schema: pa.Schema, run_id: str, config: JobConfig) -> pa.Table:
    now = dt.datetime.now(dt.timezone.utc)
    level = 0 if config.window_s is None else VIDEO_LEVEL
    return pa.Table.from_pylist([{
        "video_uri": it["video_uri"], "mode": _mode(config), "segment_index": level, "status": "error",
        "error": f"{it['video_uri']}: its Ray task failed {config.decode_retries + 1} times; no result",
        "error_kind": "lost", "source_size": None if it["source_size"] < 0 else it["source_size"],
        "source_version": it["source_version"] or None, "run_id": run_id, "labelled_at": now,
    } for it in lost], schema=schema)


def _count(summary: RunSummary, rows: pa.Table, video_level_index: int) -> None:
    """Rows are counted as rows; ok/error count videos (their video-level row)."""
    summary.rows += rows.num_rows
    for index, status, kind, error in zip(rows["segment_index"].to_pylist(), rows["status"].to_pylist(),
                                          rows["error_kind"].to_pylist(), rows["error"].to_pylist()):
        if index != video_level_index:
            continue
        if status == "ok":
            summary.ok += 1
        else:
            summary.error += 1
            summary.error_kinds[kind] = summary.error_kinds.get(kind, 0) + 1
            summary.error_examples.setdefault(kind, error)


def _work_items(videos: list[VideoRef]) -> list[dict]:
    return [{"video_uri": v.uri, "source_size": -1 if v.size is None else v.size,
             "source_version": v.version or "", "segment_index": 0, "num_segments": 1,
             "start_s": -1.0, "end_s": -1.0, "error": "", "error_kind": ""}
            for v in videos]


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

    if ray.is_initialized():
        return  # the caller's Ray (a notebook, a test): its workers already have their settings
    address = address or os.environ.get("RAY_ADDRESS")
    env = storage.aws_settings()
    # Only the names are logged: values may be credentials.
    log.info("forwarding AWS settings to Ray workers: %s", ", ".join(sorted(env)) or "none")
    runtime_env = {"env_vars": env} if env else None
    try:
        ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise JobError(f"cannot reach Ray at {address}: {exc}") from exc


def _manifest(config: JobConfig, run_id: str, sha256, model_name, mode, num_frames, started) -> dict:
    import ray
    import torch

    cfg = asdict(config)
    cfg["extensions"] = list(config.extensions)
    return {
        "run_id": run_id, "status": "running", "started_at": _iso(started), "config": cfg,
        "model": model_name, "weights_sha256": sha256, "num_frames": num_frames, "mode": mode,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                     "pyarrow": pa.__version__},
        "host": platform.node(),
    }


def _counts(summary: RunSummary) -> dict:
    return {"counts": {"listed": summary.listed, "skipped": summary.skipped, "ok": summary.ok,
                       "error": summary.error, "rows": summary.rows},
            "error_kinds": summary.error_kinds, "files": summary.files, "placement": summary.placement,
            "videos_per_s_from_dataset_start": summary.rate_from_start, "first_row_s": summary.first_row_s}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()
