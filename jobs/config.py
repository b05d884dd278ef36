"""The job's configuration: one dataclass, the single source of defaults for run, evaluate and demo."""
from __future__ import annotations

from dataclasses import dataclass

from jobs.storage import DEFAULT_EXTENSIONS
from stam_core import DEFAULT_MAX_PIXELS  # 8K; larger streams are rejected from the header (too_large)

# Decode CPU-seconds per video, measured on 10-s 640x272 H.264 clips (docs/cluster.md): the
# --dry-run estimate. Real footage differs; the run record gives the measured figure.
DECODE_CPU_S_PER_VIDEO = 0.12


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
    max_windows: int = 10_000  # windows per video, at most; a video needing more is a too_long error row
    model_name: str | None = None  # the `model` column; default: release name or the checkpoint's own
    weights_sha256: str | None = None  # optional pin of the weights file
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    resize: str = "exact"  # "fast": scale in YUV (not bit-exact; docs/decoding.md)
    allow_local_paths: bool = False  # local paths named by a manifest stored in S3
    dry_run: bool = False
    progress_interval_s: float = 30.0
    heartbeat_s: float = 60.0


def mode_of(config: JobConfig) -> str:
    """``video``, or ``window=W,stride=S``: part of every row and of the skip key."""
    if config.window_s is None:
        return "video"
    return f"window={config.window_s:g},stride={(config.stride_s or config.window_s):g}"
