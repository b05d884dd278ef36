"""Section 4 of the GPU check: all cores decoding (stam_core.read_clip in spawned processes)
feeding the model in batches; videos/s and the GPU's busy share (sum of forward times from
torch.cuda events / wall time).
"""
from __future__ import annotations

import concurrent.futures
import statistics
import time

from .common import skipped
from .decode import read_one, spawn_pool, warm_up


def decode_plus_model(ctx) -> dict:
    import numpy as np
    import torch

    import stam_core.model

    if ctx.model is None or not ctx.clips:
        return skipped("needs the model and decode sections, and one of them did not run")
    cfg = ctx.cfg
    model = ctx.model
    model.set_precision("bf16")
    paths = ctx.clips[cfg["e2e_size"]]
    batch, cuda = cfg["e2e_batch"], ctx.device == "cuda"
    max_s = min(cfg["e2e_max_s"], max(10.0, ctx.left() - 60))
    workers = ctx.cores
    # Warm the model at this batch size (cuDNN/cuBLAS choices, allocator) before timing.
    warm = np.random.default_rng(2).integers(0, 256, (batch, model.num_frames, 224, 224, 3), dtype=np.uint8)
    model(stam_core.model.clips_to_tensor(warm, ctx.device))
    if cuda:
        torch.cuda.synchronize()
    spans, pending_frames, done, errors, wait_s, decode_cpu = [], [], 0, 0, 0.0, []
    predictions = []

    def run_batch(frames_list):
        frames = np.stack(frames_list)
        if cuda:
            e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
            e0.record()
            clips = stam_core.model.clips_to_tensor(frames, ctx.device)
            e1.record()
            logits = model(clips)
            e2.record()
            spans.append((e0, e1, e2))
        else:
            t0 = time.perf_counter()
            clips = stam_core.model.clips_to_tensor(frames, ctx.device)
            t1 = time.perf_counter()
            logits = model(clips)
            spans.append((t0, t1, time.perf_counter()))
        predictions.append(logits.argmax(1))  # stays on the device until the end: no sync per batch

    with spawn_pool(workers) as pool:
        warm_up(pool, workers)
        window = 2 * workers + batch
        submitted, in_flight = 0, set()
        t_start = time.perf_counter()
        stop_at = t_start + max_s
        while True:
            while submitted < cfg["e2e_videos"] and len(in_flight) < window and time.perf_counter() < stop_at:
                in_flight.add(pool.submit(read_one, paths[submitted % len(paths)], model.num_frames, "exact", True))
                submitted += 1
            if not in_flight:
                break
            w0 = time.perf_counter()
            finished, in_flight = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            wait_s += time.perf_counter() - w0
            for f in finished:
                r = f.result()
                if "error" in r:
                    errors += 1
                    continue
                decode_cpu.append(r["cpu_s"])
                pending_frames.append(r["frames"])
                done += 1
                if len(pending_frames) == batch:
                    run_batch(pending_frames)
                    pending_frames = []
        if pending_frames:
            run_batch(pending_frames)
        labels = torch.cat(predictions).cpu() if predictions else None  # waits for the GPU's last batch
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t_start
    if cuda:
        h2d = sum(a.elapsed_time(b) for a, b, _ in spans) / 1e3
        forward = sum(b.elapsed_time(c) for _, b, c in spans) / 1e3
    else:
        h2d = sum(b - a for a, b, _ in spans)
        forward = sum(c - b for _, b, c in spans)
    result = {"size": cfg["e2e_size"], "resize": "exact (the job's default)", "workers": workers,
              "batch": batch, "precision": model.precision, "compile": False, "device": ctx.device,
              "videos": done, "errors": errors, "predictions": 0 if labels is None else int(labels.numel()),
              "wall_s": wall, "videos_per_s": done / wall, "batches": len(spans),
              "decode_cpu_s_per_video_mean": statistics.fmean(decode_cpu) if decode_cpu else None,
              "main_loop_wait_for_decode_s": wait_s,
              "timer": "torch.cuda events around clips_to_tensor and forward" if cuda
              else "time.perf_counter around clips_to_tensor and forward (CPU: synchronous)",
              "model_forward_s": forward, "h2d_and_convert_s": h2d,
              "stop": "video count" if submitted >= cfg["e2e_videos"] else f"time limit {max_s:.0f} s"}
    if cuda:
        result["gpu_busy_share"] = forward / wall
        result["bound_by"] = "decode (GPU idle most of the time)" if forward / wall < 0.8 else "model"
    else:
        result["gpu_busy_share"] = skipped(ctx.cuda_skip_reason())
        result["model_busy_share_cpu"] = forward / wall
    return result
