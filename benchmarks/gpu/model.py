"""Section 2 of the GPU check, the model alone: videos/s at each batch size, eager and compiled.

Clips are already on the device; on CUDA each pass is timed with torch.cuda.synchronize around it.
Precision agreement and the matmul probe are in precision.py.
"""
from __future__ import annotations

import statistics
import time

from .common import skipped
from .precision import agreement_parity, agreement_random, matmul_probe


def model_eager(ctx) -> dict:
    import numpy as np
    import torch

    import stam_core.model

    name = ctx.cfg["model"]
    torch.manual_seed(0)
    ctx.checkpoint = ctx.work / f"{name}_random.pth"
    stam_core.model.save_checkpoint(stam_core.model.create_model(name), ctx.checkpoint)
    model = stam_core.model.load_model(ctx.checkpoint, device=ctx.device, precision="bf16", compile=False)
    ctx.model = model
    result = {"model": name, "device": ctx.device, "precision": model.precision,
              "checkpoint": {"kind": "official format, random weights (torch.manual_seed(0))",
                             "sha256": model.weights_sha256, "bytes": ctx.checkpoint.stat().st_size},
              "flops": flop_count(name),
              "timer": "torch.cuda.synchronize + time.perf_counter per pass" if ctx.device == "cuda"
              else "time.perf_counter per pass (CPU: synchronous)",
              "warmup": ctx.cfg["warmup"], "iters": ctx.cfg["iters"]}
    if ctx.device == "cuda":
        result["weights_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    frames = np.random.default_rng(0).integers(0, 256, (max(ctx.cfg["batches"]), model.num_frames, 224, 224, 3),
                                               dtype=np.uint8)
    result["eager"] = [time_batches(ctx, model, frames, b, compiled=False, gflop=result["flops"]["gflop_per_video"])
                       for b in ctx.cfg["batches"]]
    result["compiled"] = skipped(ctx.cuda_skip_reason()) if ctx.cuda_skip_reason() else {"status": "pending"}
    result["bf16_matmul"] = matmul_probe(ctx)
    result["agreement"] = {"random_batch": agreement_random(ctx, model),
                           "parity_fixture": agreement_parity(ctx)}
    model.set_precision("bf16")
    return result


def time_batches(ctx, model, frames, batch: int, *, compiled: bool, gflop: float) -> dict:
    import torch

    import stam_core.model

    row = {"batch": batch, "compile": compiled, "precision": model.precision}
    cuda = ctx.device == "cuda"
    try:
        if cuda:
            torch.cuda.empty_cache()
        clips = stam_core.model.clips_to_tensor(frames[:batch], ctx.device)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            row["input_bytes"] = clips.numel() * clips.element_size()
        first, times = time_passes(model, clips, ctx.cfg["warmup"], ctx.cfg["iters"], cuda)
    except torch.OutOfMemoryError as e:
        return {**row, "status": "error", "error": f"out of memory: {str(e)[:300]}"}
    median = statistics.median(times)
    row.update(status="ran", first_call_s=round(first, 4), pass_s=[round(t, 5) for t in times],
               median_pass_s=median, videos_per_s=batch / median, videos_per_s_best=batch / min(times),
               videos_per_s_mean=batch * len(times) / sum(times),
               achieved_tflops_derived=batch / median * gflop / 1e3)
    if cuda:
        row["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
        row["peak_gpu_memory_gib"] = round(row["peak_gpu_memory_bytes"] / 2**30, 3)
    else:
        row["peak_gpu_memory_bytes"] = skipped(ctx.cuda_skip_reason())
    del clips
    print(f"  {'compiled' if compiled else 'eager'} batch {batch}: {row['videos_per_s']:.2f} videos/s "
          f"(first call {first:.2f} s)", flush=True)
    return row


def model_compiled(ctx) -> dict:
    import numpy as np
    import torch

    import stam_core.model

    reason = ctx.cuda_skip_reason()
    if reason:
        return skipped(reason)
    if ctx.checkpoint is None:
        return skipped("the eager model section did not run")
    if ctx.left() < 45:
        return skipped(f"time budget: {ctx.left():.0f} s left of {ctx.cfg['budget_s']:.0f} s")
    model = stam_core.model.load_model(ctx.checkpoint, device=ctx.device, precision="bf16", compile=True)
    frames = np.random.default_rng(0).integers(0, 256, (max(ctx.cfg["batches"]), model.num_frames, 224, 224, 3),
                                               dtype=np.uint8)
    gflop = flop_count(ctx.cfg["model"])["gflop_per_video"]
    rows = []
    for b in ctx.cfg["batches"]:
        if ctx.left() < 25:
            rows.append({"batch": b, **skipped(f"time budget: {ctx.left():.0f} s left")})
            continue
        rows.append(time_batches(ctx, model, frames, b, compiled=True, gflop=gflop))
    del model
    torch.cuda.empty_cache()
    return {"status": "ran", "how": "stam_core.model.load_model(compile=True): spatial.compile() and "
            "temporal.compile() with torch's defaults, batch sizes in order, so the second distinct "
            "batch size recompiles with a dynamic batch dimension; first_call_s includes compilation",
            "results": rows}


def time_passes(model, clips, warmup: int, iters: int, cuda: bool) -> tuple[float, list[float]]:
    """(seconds of the first warm-up pass, seconds of each timed pass)."""
    import torch

    def sync():
        if cuda:
            torch.cuda.synchronize()

    first = 0.0
    for i in range(max(1, warmup)):
        t0 = time.perf_counter()
        model(clips)
        sync()
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        model(clips)
        sync()
        times.append(time.perf_counter() - t0)
    return first, times


def flop_count(name: str) -> dict:
    """FLOPs of one video through the model, counted by FlopCounterMode on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from stam_core.model import MODEL_CONFIGS, STAM

    with torch.device("meta"):
        model = STAM(MODEL_CONFIGS[name]).eval()
    clips = torch.zeros(1, model.num_frames, 3, 224, 224, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.head(model._encode(clips))
    return {"model": name, "gflop_per_video": counter.get_total_flops() / 1e9,
            "method": "torch FlopCounterMode, one clip on the meta device (counts scaled_dot_product_attention)"}
