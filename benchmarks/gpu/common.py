"""Configurations, skip reasons and the result records every section of the GPU check uses."""
from __future__ import annotations

import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NO_CUDA = "cuda not available"
SMOKE_ON_CUDA = "smoke run: the CPU device only"
# Figures other sessions measured or counted; used only in the labelled estimates.
BRIEF_GFLOP_PER_VIDEO = 539.0    # stam_16, torch FlopCounterMode on a CPU run
BRIEF_H200_BF16_TFLOPS = 788.0   # bf16 matmul measured on an H200

FULL = {"model": "stam_16", "batches": [16, 32, 64, 128], "warmup": 3, "iters": 10, "compile": True,
        "sizes": {"1080p": (1920, 1080), "720p": (1280, 720)}, "seconds": 10.0, "fps": 25, "gop": 250, "bframes": 3,
        "clips_per_size": 3, "single_reps": 2, "pool_videos_per_worker": 4, "agree_batch": 64,
        "e2e_size": "720p", "e2e_batch": 64, "e2e_videos": 1536, "e2e_max_s": 45.0, "budget_s": 285.0, "matmul_n": 8192}
SMOKE = {"model": "stam_tiny", "batches": [2], "warmup": 1, "iters": 2, "compile": False,
         "sizes": {"180p": (320, 180), "144p": (256, 144)}, "seconds": 2.0, "fps": 25, "gop": 250, "bframes": 3,
         "clips_per_size": 2, "single_reps": 1, "pool_videos_per_worker": 2, "agree_batch": 4,
         "e2e_size": "144p", "e2e_batch": 4, "e2e_videos": 12, "e2e_max_s": 30.0, "budget_s": 110.0, "matmul_n": 0}


def skipped(reason: str, **extra) -> dict:
    return {"status": "skipped", "reason": reason, **extra}


def failed(exc: BaseException) -> dict:
    return {"status": "error", "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()[-3000:]}
