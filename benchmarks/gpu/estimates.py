"""The GPU check's arithmetic ceilings and derived figures, kept apart from the measurements."""
from __future__ import annotations

from .common import BRIEF_GFLOP_PER_VIDEO, BRIEF_H200_BF16_TFLOPS
from .model import flop_count


def estimates(ctx) -> dict:
    model = ctx.report.get("model", {})
    counted = (model.get("flops") or {}).get("gflop_per_video")
    out = {"kind": "ESTIMATES (arithmetic, not measurements)",
           "stam_16_ceiling_brief": {
               "gflop_per_video": BRIEF_GFLOP_PER_VIDEO, "bf16_tflops": BRIEF_H200_BF16_TFLOPS,
               "videos_per_s": BRIEF_H200_BF16_TFLOPS * 1e3 / BRIEF_GFLOP_PER_VIDEO,
               "basis": "539 GFLOP per stam_16 video (FlopCounterMode on a CPU run, which does not count the "
                        "CPU's fused attention kernel) and 788 TFLOP/s bf16 matmul measured on an H200"}}
    meta = flop_count("stam_16") if counted is None or ctx.cfg["model"] != "stam_16" else model["flops"]
    out["stam_16_ceiling_with_attention"] = {
        "gflop_per_video": meta["gflop_per_video"], "bf16_tflops": BRIEF_H200_BF16_TFLOPS,
        "videos_per_s": BRIEF_H200_BF16_TFLOPS * 1e3 / meta["gflop_per_video"],
        "basis": "FlopCounterMode on the meta device (counts scaled_dot_product_attention) and 788 TFLOP/s"}
    probe = model.get("bf16_matmul", {})
    if probe.get("status") == "ran" and ctx.cfg["model"] == "stam_16":
        out["stam_16_ceiling_this_gpu"] = {
            "gflop_per_video": meta["gflop_per_video"], "bf16_tflops": probe["tflops"],
            "videos_per_s": probe["tflops"] * 1e3 / meta["gflop_per_video"],
            "basis": "this run's bf16 matmul probe"}
    decode = ctx.report.get("decode", {})
    best = best_model_rate(model)
    singles = {(r["size"], r["resize"]): r for r in decode.get("single_process", [])}
    if best and singles:
        out["decode_cores_to_keep_up_derived"] = {
            "kind": "derived from this run's measurements: decode cores that keep one model device busy "
                    "= model videos/s (best row) x one-process CPU-seconds per video",
            "model_videos_per_s": best["videos_per_s"], "model_config": {k: best[k] for k in ("batch", "compile")},
            "cores": {f"{size} {resize}": best["videos_per_s"] * r["cpu_s_per_video_median"]
                      for (size, resize), r in singles.items()}}
    return out


def best_model_rate(model: dict) -> dict | None:
    rows = [r for r in model.get("eager", []) if r.get("status") == "ran"]
    compiled = model.get("compiled", {})
    rows += [r for r in compiled.get("results", []) if r.get("status") == "ran"] if isinstance(compiled, dict) else []
    return max(rows, key=lambda r: r["videos_per_s"]) if rows else None
