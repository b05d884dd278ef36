"""The host (Python, modules, CPU, GPU) and section 1 of the GPU check: the CUDA-marked tests."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .common import NO_CUDA, ROOT, skipped


def host(ctx) -> dict:
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
            "cpu": cpu_model(), "cores": ctx.cores, "modules": modules,
            "needed_missing": [m for m in ("torch", "timm", "numpy", "av", "PIL", "pytest") if modules[m] is None]}
    import torch

    ctx.cuda = torch.cuda.is_available()
    ctx.device = "cuda" if ctx.cuda and not ctx.smoke else "cpu"
    info["torch_cuda_build"] = torch.version.cuda
    info["cuda_available"] = ctx.cuda
    info["device"] = ctx.device
    if ctx.cuda:
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_tests(ctx) -> dict:
    if importlib.util.find_spec("pytest") is None:
        return skipped("pytest is not installed for this python")
    xml = ctx.out / "cuda_tests.xml"
    log = ctx.out / "cuda_tests.log"
    # --continue-on-collection-errors: on a lent machine without Ray or boto3 the job's
    # test modules fail to import; the CUDA tests (stam_core only) must still run.
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/", "-q", "-rs", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={xml}"]
    timeout = max(120.0, min(240.0, ctx.left() - 60))
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
