"""STAM forward-pass speed per precision: videos/s, plus agreement with fp32.

    .venv/bin/python benchmarks/model_speed.py                      # stam_16 and stam_tiny on the CPU
    .venv/bin/python benchmarks/model_speed.py --models stam_16 --batch 4 --device cuda
    .venv/bin/python benchmarks/model_speed.py --models stam_16 --weights ckpt.pth

Untrained weights (seeded) unless --weights is given: speed does not depend on the values.
Each precision gets warm-up passes, then timed passes of the model alone (the clips are
already on the device), interleaved across precisions so that drift in the machine's speed
hits all alike. For each it prints videos/s (median pass, and best pass), CPU seconds per video (less
disturbed than wall time when other work shares the cores), the speedup over fp32 and the relative
L2 error and top-1 agreement of its logits against fp32 on the same clips, and at the end the
speedup of "auto" over fp32. fp16 is measured on CUDA only unless named in --precisions
(CPUs without fp16 arithmetic emulate it).
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time

import numpy as np
import torch

import stam_core.model
from stam_core.model import cpu_bf16_features


def one_pass(model: stam_core.model.STAM, clips: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, this process's CPU seconds, logits) of one forward pass."""
    start, cpu_start = time.perf_counter(), time.process_time()
    logits = model(clips)
    if clips.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, logits


def run(name: str, args) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.weights:
        model = stam_core.model.load_model(args.weights, device=device, precision="fp32")
        name = f"{args.weights} ({model.num_frames} frames)"
    else:
        model = stam_core.model.create_model(name).to(device)
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, model.num_frames, 224, 224, 3), dtype=np.uint8)
    clips = stam_core.model.clips_to_tensor(frames, device)
    precisions = args.precisions or (["fp32", "bf16", "fp16", "auto"] if device.type == "cuda"
                                     else ["fp32", "bf16", "auto"])
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]  # the baseline every other line is compared with
    print(f"\n{name}: batch {args.batch} on {device}; {args.warmup} warm-up + up to {args.iters} timed passes "
          "per precision, interleaved; videos/s of the median pass")
    resolved = {p: model.set_precision(p) for p in precisions}  # logs each choice once
    times: dict[str, list[float]] = {p: [] for p in precisions}
    cpu_times: dict[str, list[float]] = {p: [] for p in precisions}
    logits: dict[str, torch.Tensor] = {}
    # This VM's cores reach full speed only after seconds of load: spin before timing anything.
    model.precision = "fp32"
    spin_end = time.perf_counter() + args.spin
    while time.perf_counter() < spin_end:
        one_pass(model, clips)
    for precision in precisions:
        model.precision = resolved[precision]  # already resolved and logged: switch quietly
        for _ in range(args.warmup):
            one_pass(model, clips)
    # Round-robin, so that drift in the machine's speed (a shared VM) hits every precision alike.
    for _ in range(args.iters):
        for precision in precisions:
            if sum(times[precision]) >= args.max_seconds:
                continue  # bounds emulated precisions (bf16 on a CPU without bf16 units)
            model.precision = resolved[precision]
            seconds, cpu_seconds, logits[precision] = one_pass(model, clips)
            times[precision].append(seconds)
            cpu_times[precision].append(cpu_seconds)
    rates = {p: args.batch / statistics.median(t) for p, t in times.items()}
    reference = logits["fp32"]
    for precision in precisions:
        err = ((logits[precision] - reference).norm() / reference.norm()).item()
        top1 = (logits[precision].argmax(1) == reference.argmax(1)).float().mean().item()
        label = precision if resolved[precision] == precision else f"{precision}->{resolved[precision]}"
        cpu_per_video = statistics.median(cpu_times[precision]) / args.batch
        print(f"  {label:<11} {rates[precision]:9.3f} videos/s  (best {args.batch / min(times[precision]):.3f}, "
              f"{len(times[precision])} passes)  {rates[precision] / rates['fp32']:5.2f}x fp32  "
              f"CPU {cpu_per_video:7.3f} s/video  "
              f"logits rel.err {err:.1e}  top-1 agree {top1:.0%}", flush=True)
    if "auto" in rates:
        print(f"  auto over fp32: {rates['auto'] / rates['fp32']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["stam_16", "stam_tiny"],
                    choices=list(stam_core.model.MODEL_CONFIGS))
    ap.add_argument("--weights", help="a checkpoint to time instead of untrained weights (one model)")
    ap.add_argument("--batch", type=int, default=2, help="videos per forward pass (default 2)")
    ap.add_argument("--spin", type=float, default=10, help="seconds of untimed fp32 passes first (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes per precision (default 1)")
    ap.add_argument("--iters", type=int, default=5, help="timed passes per precision (default 5)")
    ap.add_argument("--max-seconds", type=float, default=120,
                    help="stop a precision's timed passes after this long (default 120)")
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
