"""The GPU check (benchmarks/gpu_check.sh) and the tests that need a CUDA GPU.

- test_gpu_check_smoke runs everywhere: the whole check end to end on the CPU (--smoke),
  asserting that every section is there with plausible figures and that every CUDA-only
  measurement says it was skipped, and why.
- The @pytest.mark.cuda tests run only where torch.cuda.is_available() (they are skipped
  elsewhere); `benchmarks/gpu_check.sh` runs them on a lent machine (`pytest -m cuda tests/`).
  They need stam_core only (no Ray, no boto3).
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import stam_core.model

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
HAVE_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no CUDA device (torch.cuda.is_available() is False)")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm()).item()


def is_skipped(entry, reason: str) -> bool:
    return isinstance(entry, dict) and entry.get("status") == "skipped" and entry.get("reason") == reason


# --- the check itself, on the CPU ---------------------------------------------------------

@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    summary = (out / "gpu_check.md").read_text()
    # CUDA-only measurements: skipped with the reason (the smoke run always uses the CPU).
    reason = "smoke run: the CPU device only" if HAVE_CUDA else "cuda not available"

    assert report["mode"] == "smoke" and "NOT GPU figures" in report["kind"] and "not GPU figures" in summary
    for name in ("host", "cuda_tests", "model", "decode", "decode_plus_model", "estimates"):
        assert name in report, name
    assert report["host"]["device"] == "cpu" and report["host"]["cores"] >= 1
    assert report["finished"] and report["wall_s"] > 0

    # 1. the CUDA tests were selected (this file's), and skipped here for want of a GPU
    tests = report["cuda_tests"]
    assert tests["status"] == "ran", tests
    assert tests["command"].startswith("python -m pytest -m cuda tests/")
    assert tests["selected"] >= 3 and tests["failed"] == 0 and tests["errors"] == 0
    assert tests["passed"] + tests["skipped"] == tests["selected"]
    if not HAVE_CUDA:
        assert tests["skipped"] == tests["selected"]
        assert any("no CUDA device" in r for r in tests["skip_reasons"])
    assert (out / "cuda_tests.xml").exists() and (out / "cuda_tests.log").exists()

    # 2. the model alone
    model = report["model"]
    assert model["status"] == "ran" and model["model"] == "stam_tiny" and model["device"] == "cpu"
    assert model["precision"] == "bf16"
    assert 0.1 < model["flops"]["gflop_per_video"] < 2  # stam_tiny: ~0.43 GFLOP
    [row] = model["eager"]
    assert row["status"] == "ran" and row["batch"] == 2 and row["compile"] is False
    assert len(row["pass_s"]) == report["config"]["iters"] and all(t > 0 for t in row["pass_s"])
    assert 0.01 < row["videos_per_s"] < 100_000 and math.isclose(row["videos_per_s"], 2 / row["median_pass_s"])
    assert is_skipped(row["peak_gpu_memory_bytes"], reason)
    assert is_skipped(model["compiled"], reason)
    assert is_skipped(model["bf16_matmul"], reason)
    agree = model["agreement"]["random_batch"]
    assert agree["status"] == "ran" and agree["clips"] == 4 and 0 <= agree["top1_agreement"] <= 1
    assert 0 < agree["logits_rel_err"] < 0.1
    assert model["agreement"]["parity_fixture"]["status"] == "skipped"
    assert "smoke" in model["agreement"]["parity_fixture"]["reason"]

    # 3. decoding: two sizes x two resize paths, one process and all cores
    decode = report["decode"]
    assert decode["status"] == "ran"
    assert decode["clip_settings"]["gop"] == 250 and decode["clip_settings"]["bframes"] == 3
    for label, files in decode["generated"]["files"].items():
        assert files[0]["keyframes"] == 1 and files[0]["b_frames"] is True, (label, files[0])
    sizes = set(decode["clip_settings"]["sizes"])
    expected = {(s, r) for s in sizes for r in ("exact", "fast")}
    assert {(r["size"], r["resize"]) for r in decode["single_process"]} == expected
    assert {(r["size"], r["resize"]) for r in decode["all_cores"]} == expected
    for r in decode["single_process"]:
        assert r["errors"] == 0 and 0 < r["wall_s_per_video_median"] < 30 and r["frames_decoded_median"] > 0
        assert r["cpu_s_per_video_median"] > 0
    for r in decode["all_cores"]:
        assert r["errors"] == 0 and r["workers"] == report["host"]["cores"] and r["videos_per_s"] > 0

    # 4. decode plus model
    e2e = report["decode_plus_model"]
    assert e2e["status"] == "ran" and e2e["errors"] == 0
    assert e2e["videos"] == report["config"]["e2e_videos"] == e2e["predictions"]
    assert e2e["batches"] == math.ceil(e2e["videos"] / e2e["batch"])
    assert e2e["videos_per_s"] > 0 and 0 < e2e["model_forward_s"] < e2e["wall_s"]
    assert is_skipped(e2e["gpu_busy_share"], reason)
    assert 0 < e2e["model_busy_share_cpu"] <= 1

    # estimates are labelled as such, never mixed with measurements
    est = report["estimates"]
    assert "ESTIMATES" in est["kind"] and "not measurements" in est["kind"]
    assert round(est["stam_16_ceiling_brief"]["videos_per_s"]) == 1462
    assert 550 < est["stam_16_ceiling_with_attention"]["gflop_per_video"] < 575
    assert "Estimates (arithmetic, NOT measurements)" in summary


# --- on a CUDA GPU ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parity():
    """The parity fixture: the reference STAM-16 checkpoint, its clips, the official logits."""
    spec = importlib.util.spec_from_file_location("reference_checkpoint", FIXTURES / "reference_checkpoint.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    expected = json.loads((FIXTURES / "stam16_seed0.json").read_text())
    clips = torch.from_numpy(ref.clip(expected["frames"], expected["seed"], expected["batch"]))
    clips = clips.reshape(expected["batch"], expected["frames"], 3, 224, 224)  # official order: frame b*T + t
    return ref, expected, clips


@pytest.mark.cuda
@needs_cuda
def test_stam16_bf16_agrees_with_fp32_on_cuda(parity, tmp_path):
    ref, expected, clips = parity
    path = tmp_path / "stam16_seed0.pth"
    torch.save({"model": ref.state_dict(expected["frames"], expected["seed"])}, path)
    model = stam_core.model.load_model(path, device="cuda", precision="fp32")
    official = torch.tensor(expected["logits"])
    clips = clips.to("cuda")
    fp32 = model(clips)
    assert fp32.device.type == "cuda" and fp32.dtype == torch.float32
    # cuDNN may run the patch-embedding convolution in TF32: looser than the CPU's 1e-5.
    assert rel_err(fp32, official) <= 5e-3
    model.set_precision("bf16")
    bf16 = model(clips)
    assert bf16.dtype == torch.float32
    assert rel_err(bf16, fp32) <= 0.02 and rel_err(bf16, official) <= 0.02
    assert torch.equal(bf16.argmax(1).cpu(), fp32.argmax(1).cpu())
    assert torch.equal(bf16.argmax(1).cpu(), official.argmax(1))


@pytest.mark.cuda
@needs_cuda
def test_load_model_on_cuda_and_clips_to_tensor(tiny_weights):
    model = stam_core.model.load_model(tiny_weights, device="cuda")
    assert model.device.type == "cuda"
    assert model.precision == ("bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16")
    frames = np.random.default_rng(0).integers(0, 256, (3, model.num_frames, 224, 224, 3), dtype=np.uint8)
    clips = stam_core.model.clips_to_tensor(frames, "cuda")
    assert clips.device.type == "cuda" and clips.dtype == torch.float32
    assert clips.shape == (3, model.num_frames, 3, 224, 224)
    assert torch.equal(clips.cpu(), stam_core.model.clips_to_tensor(frames, "cpu"))
    logits = model(clips)
    assert logits.shape == (3, 400) and logits.dtype == torch.float32 and logits.device.type == "cuda"
    on_cpu = stam_core.model.load_model(tiny_weights, device="cpu", precision="fp32")
    assert rel_err(logits, on_cpu(stam_core.model.clips_to_tensor(frames, "cpu"))) <= 0.03


@pytest.mark.cuda
@needs_cuda
def test_stam16_batch_of_64_on_cuda(tmp_path):
    torch.manual_seed(0)
    path = stam_core.model.save_checkpoint(stam_core.model.create_model("stam_16"), tmp_path / "stam_16.pth")
    model = stam_core.model.load_model(path, device="cuda", precision="bf16")
    frames = np.random.default_rng(0).integers(0, 256, (64, 16, 224, 224, 3), dtype=np.uint8)
    logits = model(stam_core.model.clips_to_tensor(frames, "cuda"))
    torch.cuda.synchronize()
    assert logits.shape == (64, 400) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
