"""The GPU check's run: its state (Context), the order of the sections, the report on disk."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import FULL, NO_CUDA, SMOKE, SMOKE_ON_CUDA, failed, skipped
from .decode import decode
from .decode_plus_model import decode_plus_model
from .estimates import estimates
from .host import cuda_tests, host
from .model import model_compiled, model_eager
from .report import jsonable, markdown


class Context:
    """What the sections share: the configuration, the device, the model and clips, the report."""

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
        tmp.write_text(json.dumps(self.report, indent=2, default=jsonable) + "\n")
        os.replace(tmp, path)
        (self.out / "gpu_check.md").write_text(markdown(self.report))

    def section(self, name: str, fn) -> None:
        print(f"[gpu_check] {name} ({self.left():.0f} s of budget left)", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(self)
        except Exception as e:  # noqa: BLE001  (a section that breaks is recorded; the others still run)
            result = failed(e)
            print(result["traceback"], file=sys.stderr, flush=True)
        if isinstance(result, dict):
            result.setdefault("status", "ran")
            result["section_s"] = round(time.perf_counter() - t0, 2)
            self.report[name] = result
        self.save()

    def save_partial(self, name: str, result: dict) -> None:
        self.report[name] = {**result, "status": "running"}
        self.save()

    def cuda_skip_reason(self) -> str | None:
        """Why a CUDA-only measurement does not run here, or None when it does."""
        if not self.cuda:
            return NO_CUDA
        if self.smoke:
            return SMOKE_ON_CUDA
        return None


def run(args) -> int:
    """Every section in order; 2 without a CUDA device (unless --smoke), 1 if a section failed."""
    ctx = Context(args)
    ctx.section("host", host)
    if not ctx.cuda and not args.smoke:
        ctx.report["error"] = ("no CUDA device: the full check needs one (it would time stam_16 at batch 128 "
                               "on the CPU); use --smoke here, or run it on a lent machine")
        ctx.save()
        print(f"[gpu_check] {ctx.report['error']}", file=sys.stderr)
        return 2
    # Order: essential figures first; torch.compile (slow to compile) last, within the budget.
    if args.skip_tests:
        ctx.report["cuda_tests"] = skipped("--skip-tests")
    else:
        ctx.section("cuda_tests", cuda_tests)
    ctx.section("model", model_eager)
    ctx.section("decode", decode)
    ctx.section("decode_plus_model", decode_plus_model)
    if isinstance(ctx.report.get("model"), dict) and ctx.report["model"].get("status") == "ran":
        print(f"[gpu_check] model (torch.compile) ({ctx.left():.0f} s of budget left)", flush=True)
        try:
            ctx.report["model"]["compiled"] = model_compiled(ctx)
        except Exception as e:  # noqa: BLE001  (recorded in the report)
            ctx.report["model"]["compiled"] = failed(e)
        ctx.save()
    ctx.section("estimates", estimates)
    ctx.report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    ctx.save()
    if not args.workdir:
        shutil.rmtree(ctx.work, ignore_errors=True)
    print((ctx.out / "gpu_check.md").read_text())
    print(f"[gpu_check] wrote {ctx.out / 'gpu_check.json'} and {ctx.out / 'gpu_check.md'}")
    bad = [k for k in ("cuda_tests", "model", "decode", "decode_plus_model")
           if isinstance(ctx.report.get(k), dict) and ctx.report[k].get("status") in ("error", "failed")]
    return 1 if bad else 0
