"""Section 3 of the GPU check, decoding on the CPU: generated H.264 clips, read_clip's time per
video in one process and videos/s with a process pool of all cores.

The pool processes are spawned: they import this module (and common.py), which import no torch.
decode_plus_model.py uses the same pool and its work (spawn_pool, warm_up, read_one).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import statistics
import time


def _make_clip(path: str, size: tuple[int, int], num_frames: int, fps: int, gop: int, bframes: int,
               seed: int) -> dict:
    # textured, panning, grainy content; jobs.tools.samples imports no Ray or boto3
    from jobs.tools.samples import make_video

    start = time.perf_counter()
    make_video(path, codec="h264", size=tuple(size), num_frames=num_frames, fps=fps, gop=gop, bframes=bframes,
               grain=6, seed=seed)
    return {"path": path, "encode_s": time.perf_counter() - start, "bytes": os.path.getsize(path)}


def read_one(path: str, num_frames: int, resize: str, keep_frames: bool) -> dict:
    import stam_core

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        clip = stam_core.read_clip(path, num_frames, timeout=None, resize=resize)
    except stam_core.VideoError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"frames": clip.frames if keep_frames else None, "wall_s": time.perf_counter() - wall0,
            "cpu_s": time.process_time() - cpu0, "decode_cpu_ms": clip.decode_cpu_ms,
            "frames_decoded": clip.info.frames_decoded}


def _ready() -> int:
    import stam_core  # noqa: F401  (import cost paid before timing starts)

    return os.getpid()


def probe(path: str) -> dict:
    """Stream facts of a generated clip: size, frames, keyframes, B-frames (packets only, no decoding)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        codec = stream.codec_context
        return {"bytes": os.path.getsize(path), "width": codec.width, "height": codec.height, "packets": len(packets),
                "keyframes": sum(p.is_keyframe for p in packets),
                "b_frames": bool(getattr(codec, "has_b_frames", 0)) or any(
                    p.pts is not None and p.dts is not None and p.pts != p.dts for p in packets),
                "kbit_s": round(8 * os.path.getsize(path) / 1e3 / float(stream.duration * stream.time_base), 1)
                if stream.duration else None}


def spawn_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of spawned processes: a fork would copy the parent's torch (and CUDA) state."""
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def warm_up(pool, workers: int) -> None:
    """Start every process of the pool and import stam_core there, so that is not timed."""
    for f in [pool.submit(_ready) for _ in range(workers * 2)]:
        f.result()


def make_clips(ctx) -> dict:
    cfg = ctx.cfg
    frames = round(cfg["seconds"] * cfg["fps"])
    jobs = [(label, str(ctx.work / f"{label}_h264_gop{cfg['gop']}_{k}.mp4"), size, k)
            for label, size in cfg["sizes"].items() for k in range(cfg["clips_per_size"])]
    t0 = time.perf_counter()
    with spawn_pool(min(len(jobs), ctx.cores)) as pool:
        futures = {pool.submit(_make_clip, path, size, frames, cfg["fps"], cfg["gop"], cfg["bframes"], k): label
                   for label, path, size, k in jobs}
        made = [(futures[f], f.result()) for f in concurrent.futures.as_completed(futures)]
    clips = {label: sorted(m["path"] for lab, m in made if lab == label) for label in cfg["sizes"]}
    return {"clips": clips, "generate_s": round(time.perf_counter() - t0, 2),
            "files": {label: [probe(p) for p in paths[:1]] + [{"bytes": os.path.getsize(p)} for p in paths[1:]]
                      for label, paths in clips.items()}}


def decode(ctx) -> dict:
    made = make_clips(ctx)
    ctx.clips = made.pop("clips")
    cfg = ctx.cfg
    num_frames = 16 if cfg["model"] == "stam_16" else 8
    result = {"clip_settings": {"codec": "H.264 (libx264 veryfast, CRF 23)", "gop": cfg["gop"],
                                "bframes": cfg["bframes"], "seconds": cfg["seconds"], "fps": cfg["fps"],
                                "content": "jobs/tools/samples.py textured panning scene, grain 6",
                                "sizes": {k: list(v) for k, v in cfg["sizes"].items()},
                                "clips_per_size": cfg["clips_per_size"]},
              "generated": made, "num_frames": num_frames, "decoder": "PyAV via stam_core.read_clip(timeout=None)",
              "cores": ctx.cores, "single_process": [], "all_cores": []}
    result["single_process"] = one_process(ctx, num_frames)
    ctx.save_partial("decode", result)
    result["all_cores"] = all_cores(ctx, num_frames)
    return result


def one_process(ctx, num_frames: int) -> list[dict]:
    """Seconds per video in one process, each size and resize path."""
    rows = []
    with spawn_pool(1) as one:
        one.submit(_ready).result()
        for label, paths in ctx.clips.items():
            for resize in ("exact", "fast"):
                one.submit(read_one, paths[0], num_frames, resize, False).result()  # warm-up
                runs = [one.submit(read_one, p, num_frames, resize, False).result()
                        for _ in range(ctx.cfg["single_reps"]) for p in paths]
                ok = [r for r in runs if "error" not in r]
                wall = statistics.median(r["wall_s"] for r in ok)
                rows.append({
                    "size": label, "resize": resize, "videos": len(ok), "errors": len(runs) - len(ok),
                    "wall_s_per_video_median": wall, "cpu_s_per_video_median": statistics.median(r["cpu_s"] for r in ok),
                    "read_clip_decode_cpu_ms_median": statistics.median(r["decode_cpu_ms"] for r in ok),
                    "frames_decoded_median": statistics.median(r["frames_decoded"] for r in ok),
                    "videos_per_s_one_core": 1 / wall})
    return rows


def all_cores(ctx, num_frames: int) -> list[dict]:
    """Videos/s with a process pool of all cores, each size and resize path."""
    rows = []
    with spawn_pool(ctx.cores) as pool:
        warm_up(pool, ctx.cores)
        for label, paths in ctx.clips.items():
            for resize in ("exact", "fast"):
                n = max(ctx.cores * ctx.cfg["pool_videos_per_worker"], 2 * len(paths))
                t0 = time.perf_counter()
                runs = [f.result() for f in [pool.submit(read_one, paths[i % len(paths)], num_frames, resize, False)
                                             for i in range(n)]]
                wall = time.perf_counter() - t0
                ok = [r for r in runs if "error" not in r]
                rows.append({
                    "size": label, "resize": resize, "workers": ctx.cores, "videos": len(ok),
                    "errors": len(runs) - len(ok), "wall_s": wall, "videos_per_s": len(ok) / wall,
                    "videos_per_s_per_core": len(ok) / wall / ctx.cores,
                    "cpu_s_per_video_mean": statistics.fmean(r["cpu_s"] for r in ok)})
    return rows
