"""GPU check: the CUDA tests, STAM-16 throughput, decoding speed and decode + model on one machine.

    benchmarks/gpu_check.sh --out $OUT            # on a lent CUDA machine, under 5 minutes
    benchmarks/gpu_check.sh --smoke --out /tmp/x  # anywhere: tiny model and clips on the CPU

Writes ONE JSON file with every figure (gpu_check.json) and a Markdown summary
(gpu_check.md) into --out (default: $OUT, else ./gpu_check), rewritten after each section,
so a run cut short still leaves what it measured. Sections:

  cuda_tests         `python -m pytest -m cuda tests/`: pass/fail/skip counts (junit XML)
  model              videos/s of the model alone (clips already on the device) at each batch
                     size, bf16 autocast, eager and torch.compile; peak GPU memory per batch
                     size (torch.cuda.max_memory_allocated); bf16 vs fp32 top-1 agreement
                     on the parity fixture and on a fixed random batch; a bf16 matmul
                     TFLOP/s probe; the model's FLOPs per video (FlopCounterMode, meta device)
  decode             generated H.264 clips (GOP 250, B-frames): time per video in one
                     process, and videos/s with a process pool of all cores
  decode_plus_model  all cores decoding (ProcessPoolExecutor calling stam_core.read_clip)
                     feeding the model in batches: videos/s and the GPU's busy share (sum of
                     forward times from torch.cuda events / wall time)
  estimates          arithmetic ceilings: labelled estimates, never measurements

No Ray, boto3 or network: the weights are random (stam_core.model.save_checkpoint of
stam_core.model.create_model), the clips are generated with PyAV. CUDA-only measurements are
recorded as {"status": "skipped", "reason": "cuda not available"} where there is no GPU.
--smoke: stam_tiny, small clips, batch 2, 1-2 iterations, CPU device, no compile.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


# ---------------------------------------------------------------------------------------
# Work done in pool processes (spawned: they import this module, which imports no torch)
# ---------------------------------------------------------------------------------------

def _make_clip(path: str, size: tuple[int, int], num_frames: int, fps: int, gop: int, bframes: int,
               seed: int) -> dict:
    # textured, panning, grainy content; jobs.tools.samples imports no Ray or boto3
    from jobs.tools.samples import make_video

    start = time.perf_counter()
    make_video(path, codec="h264", size=tuple(size), num_frames=num_frames, fps=fps, gop=gop, bframes=bframes,
               grain=6, seed=seed)
    return {"path": path, "encode_s": time.perf_counter() - start, "bytes": os.path.getsize(path)}


def _decode(path: str, num_frames: int, resize: str, keep_frames: bool) -> dict:
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


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------

class Check:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.cfg = dict(SMOKE if args.smoke else FULL)
        if args.batches:
            self.cfg["batches"] = args.batches
        if args.budget_s:
            self.cfg["budget_s"] = args.budget_s
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu_check."))
        self.work.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.deadline = self.start + self.cfg["budget_s"]
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.cuda = False
        self.device = "cpu"
        self.model = None  # the eager model, shared by the model and decode_plus_model sections
        self.checkpoint = None
        self.clips: dict[str, list[str]] = {}  # generated clips by size label (decode section)
        self.report: dict = {
            "kind": "smoke (CPU, tiny model and clips: NOT GPU figures)" if self.smoke else "full",
            "mode": "smoke" if self.smoke else "full",
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": [sys.executable, *sys.argv],
            "config": {k: v for k, v in self.cfg.items()},
            "host": {}, "cuda_tests": {"status": "pending"}, "model": {"status": "pending"},
            "decode": {"status": "pending"}, "decode_plus_model": {"status": "pending"}, "estimates": {},
        }

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        self.report["wall_s"] = round(time.perf_counter() - self.start, 2)
        path = self.out / "gpu_check.json"
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps(self.report, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, path)
        (self.out / "gpu_check.md").write_text(markdown(self.report))

    def section(self, name: str, fn) -> None:
        print(f"[gpu_check] {name} ({self.left():.0f} s of budget left)", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001  (a section that breaks is recorded; the others still run)
            result = failed(e)
            print(result["traceback"], file=sys.stderr, flush=True)
        if isinstance(result, dict):
            result.setdefault("status", "ran")
            result["section_s"] = round(time.perf_counter() - t0, 2)
            self.report[name] = result
        self.save()

    # -- host ---------------------------------------------------------------------------
    def host(self) -> dict:
        modules = {}
        for name in ("torch", "timm", "numpy", "av", "PIL", "pytest", "ray", "boto3"):
            if importlib.util.find_spec(name) is None:
                modules[name] = None
            else:
                dist = {"PIL": "pillow"}.get(name, name)
                try:
                    modules[name] = importlib.metadata.version(dist)
                except importlib.metadata.PackageNotFoundError:
                    modules[name] = "installed"
        info = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
                "cpu": cpu_model(), "cores": self.cores, "modules": modules,
                "needed_missing": [m for m in ("torch", "timm", "numpy", "av", "PIL", "pytest") if modules[m] is None]}
        import torch

        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda and not self.smoke else "cpu"
        info["torch_cuda_build"] = torch.version.cuda
        info["cuda_available"] = self.cuda
        info["device"] = self.device
        if self.cuda:
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "memory_bytes": props.total_memory,
                           "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count(),
                           "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False)}
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=20,
                                     check=False)
                info["gpu"]["nvidia_smi"] = smi.stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        else:
            info["gpu"] = skipped(NO_CUDA)
        return info

    def cuda_skip_reason(self) -> str | None:
        """Why a CUDA-only measurement does not run here, or None when it does."""
        if not self.cuda:
            return NO_CUDA
        if self.smoke:
            return SMOKE_ON_CUDA
        return None

    # -- 1. the CUDA tests ---------------------------------------------------------------
    def cuda_tests(self) -> dict:
        if importlib.util.find_spec("pytest") is None:
            return skipped("pytest is not installed for this python")
        xml = self.out / "cuda_tests.xml"
        log = self.out / "cuda_tests.log"
        # --continue-on-collection-errors: on a lent machine without Ray or boto3 the job's
        # test modules fail to import; the CUDA tests (stam_core only) must still run.
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/", "-q", "-rs", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={xml}"]
        timeout = max(120.0, min(240.0, self.left() - 60))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            log.write_text((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
            return {"status": "error", "error": f"pytest timed out after {timeout:.0f} s", "command": " ".join(cmd[1:])}
        log.write_text(proc.stdout + proc.stderr)
        result = {"command": "python " + " ".join(cmd[1:]), "exit_code": proc.returncode,
                  "duration_s": round(time.perf_counter() - t0, 2), "log": log.name,
                  "summary": (proc.stdout.strip().splitlines() or [""])[-1]}
        if xml.exists():
            suite = ET.parse(xml).getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            # A module that fails to import is one "error" test case named after the module.
            collection = sorted(case.get("name") or case.get("classname", "") for case in suite.iter("testcase")
                                if (err := case.find("error")) is not None and err.get("message") == "collection failure")
            selected = counts["tests"] - len(collection)
            test_errors = counts["errors"] - len(collection)
            result.update(selected=selected, passed=selected - counts["failures"] - test_errors - counts["skipped"],
                          failed=counts["failures"], errors=test_errors, skipped=counts["skipped"],
                          skip_reasons=sorted({s.get("message", "") for s in suite.iter("skipped")}),
                          collection_errors=collection)
            if selected == 0:
                result["status"] = "no tests selected"
            elif counts["failures"] or test_errors:
                result["status"] = "failed"
            else:
                result["status"] = "ran"
        else:
            result["status"] = "error"
            result["error"] = f"pytest wrote no junit XML (exit code {proc.returncode}); see {log.name}"
        return result

    # -- 2. the model alone ----------------------------------------------------------------
    def model_eager(self) -> dict:
        import numpy as np
        import torch

        import stam_core.model

        name = self.cfg["model"]
        torch.manual_seed(0)
        self.checkpoint = self.work / f"{name}_random.pth"
        stam_core.model.save_checkpoint(stam_core.model.create_model(name), self.checkpoint)
        model = stam_core.model.load_model(self.checkpoint, device=self.device, precision="bf16", compile=False)
        self.model = model
        result = {"model": name, "device": self.device, "precision": model.precision,
                  "checkpoint": {"kind": "official format, random weights (torch.manual_seed(0))",
                                 "sha256": model.weights_sha256, "bytes": self.checkpoint.stat().st_size},
                  "flops": flop_count(name),
                  "timer": "torch.cuda.synchronize + time.perf_counter per pass" if self.device == "cuda"
                  else "time.perf_counter per pass (CPU: synchronous)",
                  "warmup": self.cfg["warmup"], "iters": self.cfg["iters"]}
        if self.device == "cuda":
            result["weights_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
        frames = np.random.default_rng(0).integers(0, 256, (max(self.cfg["batches"]), model.num_frames, 224, 224, 3),
                                                   dtype=np.uint8)
        result["eager"] = [self.time_batches(model, frames, b, compiled=False, gflop=result["flops"]["gflop_per_video"])
                           for b in self.cfg["batches"]]
        result["compiled"] = skipped(self.cuda_skip_reason()) if self.cuda_skip_reason() else {"status": "pending"}
        result["bf16_matmul"] = self.matmul_probe()
        result["agreement"] = {"random_batch": self.agreement_random(model),
                               "parity_fixture": self.agreement_parity()}
        model.set_precision("bf16")
        return result

    def time_batches(self, model, frames, batch: int, *, compiled: bool, gflop: float) -> dict:
        import torch

        import stam_core.model

        row = {"batch": batch, "compile": compiled, "precision": model.precision}
        cuda = self.device == "cuda"
        try:
            if cuda:
                torch.cuda.empty_cache()
            clips = stam_core.model.clips_to_tensor(frames[:batch], self.device)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                row["input_bytes"] = clips.numel() * clips.element_size()
            first, times = time_passes(model, clips, self.cfg["warmup"], self.cfg["iters"], cuda)
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
            row["peak_gpu_memory_bytes"] = skipped(NO_CUDA if not self.cuda else SMOKE_ON_CUDA)
        del clips
        print(f"  {'compiled' if compiled else 'eager'} batch {batch}: {row['videos_per_s']:.2f} videos/s "
              f"(first call {first:.2f} s)", flush=True)
        return row

    def model_compiled(self) -> dict:
        import numpy as np
        import torch

        import stam_core.model

        reason = self.cuda_skip_reason()
        if reason:
            return skipped(reason)
        if self.checkpoint is None:
            return skipped("the eager model section did not run")
        if self.left() < 45:
            return skipped(f"time budget: {self.left():.0f} s left of {self.cfg['budget_s']:.0f} s")
        model = stam_core.model.load_model(self.checkpoint, device=self.device, precision="bf16", compile=True)
        frames = np.random.default_rng(0).integers(0, 256, (max(self.cfg["batches"]), model.num_frames, 224, 224, 3),
                                                   dtype=np.uint8)
        gflop = flop_count(self.cfg["model"])["gflop_per_video"]
        rows = []
        for b in self.cfg["batches"]:
            if self.left() < 25:
                rows.append({"batch": b, **skipped(f"time budget: {self.left():.0f} s left")})
                continue
            rows.append(self.time_batches(model, frames, b, compiled=True, gflop=gflop))
        del model
        torch.cuda.empty_cache()
        return {"status": "ran", "how": "stam_core.model.load_model(compile=True): spatial.compile() and "
                "temporal.compile() with torch's defaults, batch sizes in order, so the second distinct "
                "batch size recompiles with a dynamic batch dimension; first_call_s includes compilation",
                "results": rows}

    def matmul_probe(self) -> dict:
        reason = self.cuda_skip_reason()
        if reason:
            return skipped(reason)
        import torch

        n = self.cfg["matmul_n"]
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(5):
            a @ b
        torch.cuda.synchronize()
        iters, t0 = 50, time.perf_counter()
        for _ in range(iters):
            a @ b
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        del a, b
        return {"status": "ran", "n": n, "iters": iters, "tflops": 2 * n ** 3 * iters / seconds / 1e12}

    def agreement_random(self, model) -> dict:
        import numpy as np

        import stam_core.model

        n = self.cfg["agree_batch"]
        frames = np.random.default_rng(1).integers(0, 256, (n, model.num_frames, 224, 224, 3), dtype=np.uint8)
        clips = stam_core.model.clips_to_tensor(frames, self.device)
        return compare_precisions(model, clips, "fixed random batch (uint8 seed 1), random weights")

    def agreement_parity(self) -> dict:
        if self.smoke:
            return skipped("smoke run: the parity fixture is stam_16 (ViT-B), minutes on a CPU; "
                           "the full run (and tests/test_gpu.py on CUDA) checks it")
        import importlib.util as iu

        import torch

        import stam_core.model

        fixtures = ROOT / "tests" / "fixtures"
        spec = iu.spec_from_file_location("reference_checkpoint", fixtures / "reference_checkpoint.py")
        ref = iu.module_from_spec(spec)
        spec.loader.exec_module(ref)
        expected = json.loads((fixtures / "stam16_seed0.json").read_text())
        path = self.work / "stam16_seed0.pth"
        torch.save({"model": ref.state_dict(expected["frames"], expected["seed"])}, path)
        model = stam_core.model.load_model(path, device=self.device, precision="fp32")
        clips = torch.from_numpy(ref.clip(expected["frames"], expected["seed"], expected["batch"]))
        clips = clips.reshape(expected["batch"], expected["frames"], 3, 224, 224).to(self.device)
        result = compare_precisions(model, clips, "parity fixture (tests/fixtures, reference checkpoint seed 0)",
                                    official=torch.tensor(expected["logits"]))
        del model
        return result

    # -- 3. decoding -----------------------------------------------------------------------
    def make_clips(self) -> dict:
        cfg = self.cfg
        frames = round(cfg["seconds"] * cfg["fps"])
        jobs = [(label, str(self.work / f"{label}_h264_gop{cfg['gop']}_{k}.mp4"), size, k)
                for label, size in cfg["sizes"].items() for k in range(cfg["clips_per_size"])]
        ctx = multiprocessing.get_context("spawn")
        t0 = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(min(len(jobs), self.cores), mp_context=ctx) as pool:
            futures = {pool.submit(_make_clip, path, size, frames, cfg["fps"], cfg["gop"], cfg["bframes"], k): label
                       for label, path, size, k in jobs}
            made = [(futures[f], f.result()) for f in concurrent.futures.as_completed(futures)]
        clips = {label: sorted(m["path"] for lab, m in made if lab == label) for label in cfg["sizes"]}
        return {"clips": clips, "generate_s": round(time.perf_counter() - t0, 2),
                "files": {label: [probe(p) for p in paths[:1]] + [{"bytes": os.path.getsize(p)} for p in paths[1:]]
                          for label, paths in clips.items()}}

    def decode(self) -> dict:
        made = self.make_clips()
        self.clips = made.pop("clips")
        cfg = self.cfg
        num_frames = 16 if cfg["model"] == "stam_16" else 8
        result = {"clip_settings": {"codec": "H.264 (libx264 veryfast, CRF 23)", "gop": cfg["gop"],
                                    "bframes": cfg["bframes"], "seconds": cfg["seconds"], "fps": cfg["fps"],
                                    "content": "jobs/tools/samples.py textured panning scene, grain 6",
                                    "sizes": {k: list(v) for k, v in cfg["sizes"].items()},
                                    "clips_per_size": cfg["clips_per_size"]},
                  "generated": made, "num_frames": num_frames, "decoder": "PyAV via stam_core.read_clip(timeout=None)",
                  "cores": self.cores, "single_process": [], "all_cores": []}
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as one:
            one.submit(_ready).result()
            for label, paths in self.clips.items():
                for resize in ("exact", "fast"):
                    one.submit(_decode, paths[0], num_frames, resize, False).result()  # warm-up
                    runs = [one.submit(_decode, p, num_frames, resize, False).result()
                            for _ in range(cfg["single_reps"]) for p in paths]
                    ok = [r for r in runs if "error" not in r]
                    wall = statistics.median(r["wall_s"] for r in ok)
                    result["single_process"].append({
                        "size": label, "resize": resize, "videos": len(ok), "errors": len(runs) - len(ok),
                        "wall_s_per_video_median": wall, "cpu_s_per_video_median": statistics.median(r["cpu_s"] for r in ok),
                        "read_clip_decode_cpu_ms_median": statistics.median(r["decode_cpu_ms"] for r in ok),
                        "frames_decoded_median": statistics.median(r["frames_decoded"] for r in ok),
                        "videos_per_s_one_core": 1 / wall})
        self.save_partial("decode", result)
        with concurrent.futures.ProcessPoolExecutor(self.cores, mp_context=ctx) as pool:
            for f in [pool.submit(_ready) for _ in range(self.cores * 2)]:
                f.result()
            for label, paths in self.clips.items():
                for resize in ("exact", "fast"):
                    n = max(self.cores * cfg["pool_videos_per_worker"], 2 * len(paths))
                    t0 = time.perf_counter()
                    runs = [f.result() for f in [pool.submit(_decode, paths[i % len(paths)], num_frames, resize, False)
                                                 for i in range(n)]]
                    wall = time.perf_counter() - t0
                    ok = [r for r in runs if "error" not in r]
                    result["all_cores"].append({
                        "size": label, "resize": resize, "workers": self.cores, "videos": len(ok),
                        "errors": len(runs) - len(ok), "wall_s": wall, "videos_per_s": len(ok) / wall,
                        "videos_per_s_per_core": len(ok) / wall / self.cores,
                        "cpu_s_per_video_mean": statistics.fmean(r["cpu_s"] for r in ok)})
        return result

    def save_partial(self, name: str, result: dict) -> None:
        self.report[name] = {**result, "status": "running"}
        self.save()

    # -- 4. decode plus model ------------------------------------------------------------------
    def decode_plus_model(self) -> dict:
        import numpy as np
        import torch

        import stam_core.model

        if self.model is None or not self.clips:
            return skipped("needs the model and decode sections, and one of them did not run")
        cfg = self.cfg
        model = self.model
        model.set_precision("bf16")
        paths = self.clips[cfg["e2e_size"]]
        batch, cuda = cfg["e2e_batch"], self.device == "cuda"
        max_s = min(cfg["e2e_max_s"], max(10.0, self.left() - 60))
        workers = self.cores
        # Warm the model at this batch size (cuDNN/cuBLAS choices, allocator) before timing.
        warm = np.random.default_rng(2).integers(0, 256, (batch, model.num_frames, 224, 224, 3), dtype=np.uint8)
        model(stam_core.model.clips_to_tensor(warm, self.device))
        if cuda:
            torch.cuda.synchronize()
        spans, pending_frames, done, errors, wait_s, decode_cpu = [], [], 0, 0, 0.0, []
        model_s_cpu = 0.0
        predictions = []

        def run_batch(frames_list):
            nonlocal model_s_cpu
            frames = np.stack(frames_list)
            if cuda:
                e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                e0.record()
                clips = stam_core.model.clips_to_tensor(frames, self.device)
                e1.record()
                logits = model(clips)
                e2.record()
                spans.append((e0, e1, e2))
            else:
                t0 = time.perf_counter()
                clips = stam_core.model.clips_to_tensor(frames, self.device)
                t1 = time.perf_counter()
                logits = model(clips)
                spans.append((t0, t1, time.perf_counter()))
            predictions.append(logits.argmax(1))  # stays on the device until the end: no sync per batch

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for f in [pool.submit(_ready) for _ in range(workers * 2)]:
                f.result()
            window = 2 * workers + batch
            submitted, in_flight = 0, set()
            t_start = time.perf_counter()
            stop_at = t_start + max_s
            while True:
                while submitted < cfg["e2e_videos"] and len(in_flight) < window and time.perf_counter() < stop_at:
                    in_flight.add(pool.submit(_decode, paths[submitted % len(paths)], model.num_frames, "exact", True))
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
                  "batch": batch, "precision": model.precision, "compile": False, "device": self.device,
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
            result["gpu_busy_share"] = skipped(NO_CUDA if not self.cuda else SMOKE_ON_CUDA)
            result["model_busy_share_cpu"] = forward / wall
        return result

    # -- estimates ---------------------------------------------------------------------------
    def estimates(self) -> dict:
        model = self.report.get("model", {})
        counted = (model.get("flops") or {}).get("gflop_per_video")
        out = {"kind": "ESTIMATES (arithmetic, not measurements)",
               "stam_16_ceiling_brief": {
                   "gflop_per_video": BRIEF_GFLOP_PER_VIDEO, "bf16_tflops": BRIEF_H200_BF16_TFLOPS,
                   "videos_per_s": BRIEF_H200_BF16_TFLOPS * 1e3 / BRIEF_GFLOP_PER_VIDEO,
                   "basis": "539 GFLOP per stam_16 video (FlopCounterMode on a CPU run, which does not count the "
                            "CPU's fused attention kernel) and 788 TFLOP/s bf16 matmul measured on an H200"}}
        meta = flop_count("stam_16") if counted is None or self.cfg["model"] != "stam_16" else model["flops"]
        out["stam_16_ceiling_with_attention"] = {
            "gflop_per_video": meta["gflop_per_video"], "bf16_tflops": BRIEF_H200_BF16_TFLOPS,
            "videos_per_s": BRIEF_H200_BF16_TFLOPS * 1e3 / meta["gflop_per_video"],
            "basis": "FlopCounterMode on the meta device (counts scaled_dot_product_attention) and 788 TFLOP/s"}
        probe = model.get("bf16_matmul", {})
        if probe.get("status") == "ran" and self.cfg["model"] == "stam_16":
            out["stam_16_ceiling_this_gpu"] = {
                "gflop_per_video": meta["gflop_per_video"], "bf16_tflops": probe["tflops"],
                "videos_per_s": probe["tflops"] * 1e3 / meta["gflop_per_video"],
                "basis": "this run's bf16 matmul probe"}
        decode = self.report.get("decode", {})
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


def compare_precisions(model, clips, what: str, official=None) -> dict:
    """bf16 autocast vs fp32 logits on the same clips: top-1 agreement and relative L2 error."""
    import torch

    before = model.precision
    try:
        model.set_precision("fp32")
        fp32 = model(clips).cpu()
        model.set_precision("bf16")
        bf16 = model(clips).cpu()
    finally:
        model.set_precision(before)
    agree = (bf16.argmax(1) == fp32.argmax(1)).float().mean().item()
    top2 = fp32.topk(2, dim=1).values
    result = {"status": "ran", "on": what, "clips": int(clips.shape[0]), "device": str(clips.device),
              "top1_agreement": agree, "logits_rel_err": ((bf16 - fp32).norm() / fp32.norm()).item(),
              "fp32_top1_margin_min": (top2[:, 0] - top2[:, 1]).min().item()}
    if official is not None:
        result["fp32_vs_official_rel_err"] = ((fp32 - official).norm() / official.norm()).item()
        result["bf16_vs_official_rel_err"] = ((bf16 - official).norm() / official.norm()).item()
        result["bf16_top1_equals_official"] = bool(torch.equal(bf16.argmax(1), official.argmax(1)))
    return result


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


def best_model_rate(model: dict) -> dict | None:
    rows = [r for r in model.get("eager", []) if r.get("status") == "ran"]
    compiled = model.get("compiled", {})
    rows += [r for r in compiled.get("results", []) if r.get("status") == "ran"] if isinstance(compiled, dict) else []
    return max(rows, key=lambda r: r["videos_per_s"]) if rows else None


def probe(path: str) -> dict:
    """Stream facts of a generated clip: size, frames, keyframes, B-frames (packets only, no decoding)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        ctx = stream.codec_context
        return {"bytes": os.path.getsize(path), "width": ctx.width, "height": ctx.height, "packets": len(packets),
                "keyframes": sum(p.is_keyframe for p in packets),
                "b_frames": bool(getattr(ctx, "has_b_frames", 0)) or any(
                    p.pts is not None and p.dts is not None and p.pts != p.dts for p in packets),
                "kbit_s": round(8 * os.path.getsize(path) / 1e3 / float(stream.duration * stream.time_base), 1)
                if stream.duration else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---------------------------------------------------------------------------------------
# The Markdown summary
# ---------------------------------------------------------------------------------------

def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, dict):
        return f"skipped ({value.get('reason')})" if value.get("status") == "skipped" else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def markdown(r: dict) -> str:
    host = r.get("host", {})
    gpu = host.get("gpu", {})
    lines = [f"# GPU check: {r['kind']}", "",
             (f"Started {r['started']}, {r.get('wall_s', 0):.0f} s. Host: {host.get('cpu', '?')}, "
              f"{host.get('cores', '?')} cores; GPU: {gpu.get('name') if 'name' in gpu else _fmt(gpu)}; "
              f"torch {(host.get('modules') or {}).get('torch')}; device used: {host.get('device')}."), ""]
    if r["mode"] == "smoke":
        lines += ["**Smoke run: tiny model, tiny clips, CPU. These are not GPU figures.**", ""]
    t = r.get("cuda_tests", {})
    lines += ["## CUDA tests", "", f"`{t.get('command', '')}`: status {t.get('status')}, passed {t.get('passed')}, "
              f"failed {t.get('failed')}, errors {t.get('errors')}, skipped {t.get('skipped')}"
              + (f" ({'; '.join(t.get('skip_reasons') or [])})" if t.get("skip_reasons") else ""), ""]
    if t.get("collection_errors"):
        lines += [f"Modules that failed to import (not CUDA tests): {', '.join(t['collection_errors'])}", ""]
    m = r.get("model", {})
    lines += ["## Model alone", ""]
    if m.get("status") in ("ran", "running"):
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
    else:
        lines += [f"{m.get('status')}: {m.get('reason') or m.get('error')}", ""]
    d = r.get("decode", {})
    lines += ["## Decoding (CPU)", ""]
    if d.get("single_process"):
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
    else:
        lines += [f"{d.get('status')}: {d.get('reason') or d.get('error')}", ""]
    e = r.get("decode_plus_model", {})
    lines += ["## Decode plus model", ""]
    if e.get("status") == "ran":
        lines += [f"{e['workers']} decode processes, {e['size']} clips, batch {e['batch']}, {e['precision']}, "
                  f"eager, on {e['device']}: **{_fmt(e['videos_per_s'])} videos/s** ({e['videos']} videos in "
                  f"{e['wall_s']:.1f} s); GPU busy share: {_fmt(e['gpu_busy_share'])}"
                  + (f"; model busy share (CPU timer): {_fmt(e['model_busy_share_cpu'])}" if "model_busy_share_cpu" in e
                     else "") + f"; bound by: {e.get('bound_by', 'n/a')}", ""]
    else:
        lines += [f"{e.get('status')}: {e.get('reason') or e.get('error')}", ""]
    est = r.get("estimates", {})
    lines += ["## Estimates (arithmetic, NOT measurements)", ""]
    for key, value in est.items():
        if isinstance(value, dict) and "videos_per_s" in value:
            lines.append(f"- {key}: {value['gflop_per_video']:.0f} GFLOP/video at {value['bf16_tflops']:.0f} "
                         f"TFLOP/s => ~{value['videos_per_s']:,.0f} videos/s ({value['basis']})")
        elif isinstance(value, dict) and "cores" in value:
            lines.append(f"- decode cores to keep one {r['host'].get('device')} model busy (derived, not an estimate): "
                         + ", ".join(f"{k}: {v:.1f}" for k, v in value["cores"].items())
                         + f" (model at {value['model_videos_per_s']:.1f} videos/s)")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model and clips on the CPU (seconds, not minutes)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check",
                    help="folder for gpu_check.json and gpu_check.md (default: $OUT, else ./gpu_check)")
    ap.add_argument("--workdir", help="folder for clips and checkpoints (default: a new temp folder, removed after)")
    ap.add_argument("--batches", type=int, nargs="+", help="batch sizes of the model section")
    ap.add_argument("--budget-s", type=float, help="time budget in seconds (default 285 full, 110 smoke)")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the CUDA-marked tests")
    args = ap.parse_args()
    check = Check(args)
    check.section("host", check.host)
    if not check.cuda and not args.smoke:
        check.report["error"] = ("no CUDA device: the full check needs one (it would time stam_16 at batch 128 "
                                 "on the CPU); use --smoke here, or run it on a lent machine")
        check.save()
        print(f"[gpu_check] {check.report['error']}", file=sys.stderr)
        return 2
    # Order: essential figures first; torch.compile (slow to compile) last, within the budget.
    if args.skip_tests:
        check.report["cuda_tests"] = skipped("--skip-tests")
    else:
        check.section("cuda_tests", check.cuda_tests)
    check.section("model", check.model_eager)
    check.section("decode", check.decode)
    check.section("decode_plus_model", check.decode_plus_model)
    if isinstance(check.report.get("model"), dict) and check.report["model"].get("status") == "ran":
        print(f"[gpu_check] model (torch.compile) ({check.left():.0f} s of budget left)", flush=True)
        try:
            check.report["model"]["compiled"] = check.model_compiled()
        except Exception as e:  # noqa: BLE001  (recorded in the report)
            check.report["model"]["compiled"] = failed(e)
        check.save()
    check.section("estimates", check.estimates)
    check.report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    check.save()
    if not args.workdir:
        shutil.rmtree(check.work, ignore_errors=True)
    print((check.out / "gpu_check.md").read_text())
    print(f"[gpu_check] wrote {check.out / 'gpu_check.json'} and {check.out / 'gpu_check.md'}")
    bad = [k for k in ("cuda_tests", "model", "decode", "decode_plus_model")
           if isinstance(check.report.get(k), dict) and check.report[k].get("status") in ("error", "failed")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
