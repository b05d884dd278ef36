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
# The sections are in benchmarks/gpu/ (its __init__.py lists them); this file is the command line.
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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
    # Imported here, not at the top: the decode pool's spawned processes run this file again
    # (as __mp_main__) and need none of it.
    from benchmarks.gpu.run import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
