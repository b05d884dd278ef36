"""The GPU check's outputs: gpu_check.json's encoding and the gpu_check.md summary."""
from __future__ import annotations

import json
from pathlib import Path


def jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, dict):
        return f"skipped ({value.get('reason')})" if value.get("status") == "skipped" else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def _not_ran(section: dict) -> list[str]:
    return [f"{section.get('status')}: {section.get('reason') or section.get('error')}", ""]


def markdown(r: dict) -> str:
    host = r.get("host", {})
    gpu = host.get("gpu", {})
    lines = [f"# GPU check: {r['kind']}", "",
             (f"Started {r['started']}, {r.get('wall_s', 0):.0f} s. Host: {host.get('cpu', '?')}, "
              f"{host.get('cores', '?')} cores; GPU: {gpu.get('name') if 'name' in gpu else _fmt(gpu)}; "
              f"torch {(host.get('modules') or {}).get('torch')}; device used: {host.get('device')}."), ""]
    if r["mode"] == "smoke":
        lines += ["**Smoke run: tiny model, tiny clips, CPU. These are not GPU figures.**", ""]
    lines += _cuda_tests(r.get("cuda_tests", {}))
    lines += _model(r.get("model", {}))
    lines += _decoding(r.get("decode", {}))
    lines += _decode_plus_model(r.get("decode_plus_model", {}))
    lines += _estimates(r.get("estimates", {}), host)
    return "\n".join(lines)


def _cuda_tests(t: dict) -> list[str]:
    lines = ["## CUDA tests", "", f"`{t.get('command', '')}`: status {t.get('status')}, passed {t.get('passed')}, "
             f"failed {t.get('failed')}, errors {t.get('errors')}, skipped {t.get('skipped')}"
             + (f" ({'; '.join(t.get('skip_reasons') or [])})" if t.get("skip_reasons") else ""), ""]
    if t.get("collection_errors"):
        lines += [f"Modules that failed to import (not CUDA tests): {', '.join(t['collection_errors'])}", ""]
    return lines


def _model(m: dict) -> list[str]:
    lines = ["## Model alone", ""]
    if m.get("status") not in ("ran", "running"):
        return lines + _not_ran(m)
    flops = m.get("flops", {})
    lines += [(f"{m.get('model')} on {m.get('device')}, {m.get('precision')} autocast, random weights; "
               f"{m.get('warmup')} warm-up + {m.get('iters')} timed passes; {m.get('timer')}. "
               f"{flops.get('gflop_per_video', 0):.1f} GFLOP per video (FlopCounterMode, meta device)."), "",
              "| batch | compile | videos/s (median pass) | best | first call s | peak GPU memory GiB | TFLOP/s (derived) |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    compiled = m.get("compiled", {})
    rows = list(m.get("eager", [])) + (compiled.get("results", []) if isinstance(compiled, dict) else [])
    for row in rows:
        if row.get("status") != "ran":
            lines.append(f"| {row.get('batch')} | {row.get('compile', '')} | {row.get('status')}: "
                         f"{row.get('reason') or row.get('error')} | | | | |")
            continue
        mem = row.get("peak_gpu_memory_gib", row.get("peak_gpu_memory_bytes"))
        lines.append(f"| {row['batch']} | {row['compile']} | {_fmt(row['videos_per_s'])} | "
                     f"{_fmt(row['videos_per_s_best'])} | {_fmt(row['first_call_s'])} | {_fmt(mem)} | "
                     f"{_fmt(row['achieved_tflops_derived'])} |")
    if isinstance(compiled, dict) and compiled.get("status") == "skipped":
        lines.append(f"| | True | skipped ({compiled.get('reason')}) | | | | |")
    lines.append("")
    mm = m.get("bf16_matmul", {})
    lines += [f"bf16 matmul probe: {_fmt(mm.get('tflops')) + ' TFLOP/s' if mm.get('status') == 'ran' else _fmt(mm)}", ""]
    for key, a in (m.get("agreement") or {}).items():
        if a.get("status") == "ran":
            extra = (f", fp32 vs official {a['fp32_vs_official_rel_err']:.1e}, bf16 top-1 = official: "
                     f"{a['bf16_top1_equals_official']}") if "fp32_vs_official_rel_err" in a else ""
            lines.append(f"- bf16 vs fp32, {a['on']}: top-1 agreement {a['top1_agreement']:.1%} of {a['clips']} "
                         f"clips, logits rel. err {a['logits_rel_err']:.1e}{extra}")
        else:
            lines.append(f"- {key}: {_fmt(a)}")
    lines.append("")
    return lines


def _decoding(d: dict) -> list[str]:
    lines = ["## Decoding (CPU)", ""]
    if not d.get("single_process"):
        return lines + _not_ran(d)
    lines += [f"Generated clips: {json.dumps(d.get('clip_settings'))}", "",
              ("| size | resize | one process: s/video (wall) | CPU s/video | frames decoded | "
               f"all {d.get('cores')} cores: videos/s | per core |"), "|---|---|---:|---:|---:|---:|---:|"]
    pooled = {(x["size"], x["resize"]): x for x in d.get("all_cores", [])}
    for s in d["single_process"]:
        p = pooled.get((s["size"], s["resize"]), {})
        lines.append(f"| {s['size']} | {s['resize']} | {_fmt(s['wall_s_per_video_median'])} | "
                     f"{_fmt(s['cpu_s_per_video_median'])} | {_fmt(s['frames_decoded_median'])} | "
                     f"{_fmt(p.get('videos_per_s'))} | {_fmt(p.get('videos_per_s_per_core'))} |")
    lines.append("")
    return lines


def _decode_plus_model(e: dict) -> list[str]:
    lines = ["## Decode plus model", ""]
    if e.get("status") != "ran":
        return lines + _not_ran(e)
    lines += [f"{e['workers']} decode processes, {e['size']} clips, batch {e['batch']}, {e['precision']}, "
              f"eager, on {e['device']}: **{_fmt(e['videos_per_s'])} videos/s** ({e['videos']} videos in "
              f"{e['wall_s']:.1f} s); GPU busy share: {_fmt(e['gpu_busy_share'])}"
              + (f"; model busy share (CPU timer): {_fmt(e['model_busy_share_cpu'])}" if "model_busy_share_cpu" in e
                 else "") + f"; bound by: {e.get('bound_by', 'n/a')}", ""]
    return lines


def _estimates(est: dict, host: dict) -> list[str]:
    lines = ["## Estimates (arithmetic, NOT measurements)", ""]
    for key, value in est.items():
        if isinstance(value, dict) and "videos_per_s" in value:
            lines.append(f"- {key}: {value['gflop_per_video']:.0f} GFLOP/video at {value['bf16_tflops']:.0f} "
                         f"TFLOP/s => ~{value['videos_per_s']:,.0f} videos/s ({value['basis']})")
        elif isinstance(value, dict) and "cores" in value:
            lines.append(f"- decode cores to keep one {host.get('device')} model busy (derived, not an estimate): "
                         + ", ".join(f"{k}: {v:.1f}" for k, v in value["cores"].items())
                         + f" (model at {value['model_videos_per_s']:.1f} videos/s)")
    lines.append("")
    return lines
