"""Precision and input: which precision a device runs STAM in, and decoded frames as the model's tensor.

Low precision is bf16/fp16 autocast inside the network's forward (``AUTOCAST_DTYPES``);
``resolve_precision`` picks it for a device ("auto": bf16 on CUDA with bf16, fp16 on other
CUDA, bf16 on a CPU with AVX512-BF16 or AMX, else fp32).
"""
from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# CPU features that give bf16/fp16 matrix arithmetic its own units; without them oneDNN
# emulates the type (converting to fp32), which is slower than plain fp32.
FAST_CPU_FEATURES = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def check_precision(requested: str) -> None:
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason) for `requested` on `device`."""
    check_precision(requested)
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        if requested == "auto":
            return ("bf16", "CUDA device with bf16") if bf16 else ("fp16", "CUDA device without native bf16")
        if requested == "bf16" and not bf16:
            raise ValueError(f"precision bf16 requested but {device} has no native bf16; use fp16 or auto")
        return requested, "requested"
    if device.type == "cpu":
        if requested == "auto":
            if fast := cpu_bf16_features():
                return "bf16", f"CPU has {'/'.join(fast)}"
            return "fp32", "CPU has no AVX512-BF16 or AMX, where bf16 is emulated and slower than fp32"
        if requested != "fp32" and not cpu_features(requested):
            log.warning("precision %s on a CPU without %s is emulated: expect it slower than fp32",
                        requested, "/".join(FAST_CPU_FEATURES[requested]).upper())
        return requested, "requested"
    if requested == "auto":
        return "fp32", f"no low-precision policy for {device.type}"
    return requested, "requested"


def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU features that make bf16 fast (AVX512-BF16, AMX-BF16) found in /proc/cpuinfo."""
    return cpu_features("bf16")


def cpu_features(precision: str) -> tuple[str, ...]:
    """The CPU features that make ``precision`` ("bf16" or "fp16") fast, found in /proc/cpuinfo."""
    flags = _cpu_flags()
    return tuple(f for f in FAST_CPU_FEATURES[precision] if f in flags)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()  # not Linux: no reliable signal, so no automatic bf16
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def clips_to_tensor(frames: np.ndarray, device: Union[str, torch.device]) -> torch.Tensor:
    """Decoded uint8 frames [B, T, H, W, 3] -> float32 [B, T, 3, H, W] in [0, 1] on `device`.

    The uint8 data crosses to the device (4x fewer bytes than floats; on CUDA from pinned
    memory, asynchronously) and is converted there, exactly as ToTensor does (x / 255).
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a numpy uint8 array [B, T, H, W, 3], got {got}")
    device = torch.device(device)
    with warnings.catch_warnings():
        # Frames read from Arrow batches are read-only views; torch warns, but nothing below
        # writes to them (pinning and the float conversion make new tensors), so no copy.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        data = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        data = data.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        data = data.to(device)
    clips = data.permute(0, 1, 4, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    return clips.div_(255)
