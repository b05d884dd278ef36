"""bf16 vs fp32 agreement (a fixed random batch, the parity fixture) and a bf16 matmul probe."""
from __future__ import annotations

import json
import time

from .common import ROOT, skipped


def matmul_probe(ctx) -> dict:
    reason = ctx.cuda_skip_reason()
    if reason:
        return skipped(reason)
    import torch

    n = ctx.cfg["matmul_n"]
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


def agreement_random(ctx, model) -> dict:
    import numpy as np

    import stam_core.model

    n = ctx.cfg["agree_batch"]
    frames = np.random.default_rng(1).integers(0, 256, (n, model.num_frames, 224, 224, 3), dtype=np.uint8)
    clips = stam_core.model.clips_to_tensor(frames, ctx.device)
    return compare_precisions(model, clips, "fixed random batch (uint8 seed 1), random weights")


def agreement_parity(ctx) -> dict:
    if ctx.smoke:
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
    path = ctx.work / "stam16_seed0.pth"
    torch.save({"model": ref.state_dict(expected["frames"], expected["seed"])}, path)
    model = stam_core.model.load_model(path, device=ctx.device, precision="fp32")
    clips = torch.from_numpy(ref.clip(expected["frames"], expected["seed"], expected["batch"]))
    clips = clips.reshape(expected["batch"], expected["frames"], 3, 224, 224).to(ctx.device)
    result = compare_precisions(model, clips, "parity fixture (tests/fixtures, reference checkpoint seed 0)",
                                official=torch.tensor(expected["logits"]))
    del model
    return result


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
