"""STAM forward-pass speed per precision: videos/s, plus agreement with fp32.

    .venv/bin/python benchmarks/model_speed.py                      # stam_16 and stam_tiny on the CPU
    .venv/bin/python benchmarks/model_speed.py --models stam_16 --batch 4 --device cuda
    .venv/bin/python benchmarks/model_speed.py --models stam_16 --weights ckpt.pth

Untrained weights (seeded) unless --weights is given: speed does not depend on the values.
Each precision gets warm-up passes, then timed passes of the model alone (the clips are
already on the device). For each it prints videos/s, the speedup over fp32 and the relative
L2 error and top-1 agreement of its logits against fp32 on the same clips, and at the end the
speedup of "auto" over fp32. fp16 is measured on CUDA only unless named in --precisions
(CPUs without fp16 arithmetic emulate it).
"""
from __future__ import annotations

import argparse
import logging
import platform
import time

import numpy as np
import torch

import stam_core
from stam_core.model import cpu_bf16_features


def bench(model: stam_core.STAM, clips: torch.Tensor, warmup: int, iters: int) -> tuple[float, torch.Tensor]:
    """(videos/s, logits of the last pass)."""
    for _ in range(warmup):
        logits = model(clips)
    if clips.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        logits = model(clips)
    if clips.device.type == "cuda":
        torch.cuda.synchronize()
    return clips.shape[0] * iters / (time.perf_counter() - start), logits


def run(name: str, args) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.weights:
        model = stam_core.load_model(args.weights, device=device, precision="fp32")
        name = f"{args.weights} ({model.num_frames} frames)"
    else:
        model = stam_core.create_model(name).to(device)
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, model.num_frames, 224, 224, 3), dtype=np.uint8)
    clips = stam_core.clips_to_tensor(frames, device)
    precisions = args.precisions or (["fp32", "bf16", "fp16", "auto"] if device.type == "cuda"
                                     else ["fp32", "bf16", "auto"])
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]  # the baseline every other line is compared with
    print(f"\n{name}: batch {args.batch}, {args.warmup} warm-up + {args.iters} timed passes on {device}")
    rates: dict[str, float] = {}
    reference = None
    for precision in precisions:
        resolved = model.set_precision(precision)
        rate, logits = bench(model, clips, args.warmup, args.iters)
        rates[precision] = rate
        if reference is None:
            reference = logits
        err = ((logits - reference).norm() / reference.norm()).item()
        top1 = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        label = precision if resolved == precision else f"{precision}->{resolved}"
        print(f"  {label:<12} {rate:9.3f} videos/s   {rate / rates['fp32']:5.2f}x fp32   "
              f"logits rel.err {err:.2e}   top-1 agree {top1:.0%}", flush=True)
    if "auto" in rates:
        print(f"  auto over fp32: {rates['auto'] / rates['fp32']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["stam_16", "stam_tiny"], choices=list(stam_core.MODEL_CONFIGS))
    ap.add_argument("--weights", help="a checkpoint to time instead of untrained weights (one model)")
    ap.add_argument("--batch", type=int, default=2, help="videos per forward pass (default 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "fp16", "auto"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show stam_core's log (precision choices)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bf16 CPU features: {', '.join(cpu_bf16_features()) or 'none'}")
    if torch.cuda.is_available():
        print(f"CUDA device: {torch.cuda.get_device_name()}")
    for name in ([args.models[0]] if args.weights else args.models):
        run(name, args)


if __name__ == "__main__":
    main()
