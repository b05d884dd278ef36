#!/usr/bin/env bash
# The GPU check: CUDA tests, STAM-16 throughput, decoding and decode + model on one machine.
#
#   benchmarks/gpu_check.sh --out "$OUT"            # on a lent CUDA machine: under 5 minutes
#   benchmarks/gpu_check.sh --smoke --out /tmp/gc   # anywhere, on the CPU: tiny model and clips
#
# Needs torch, timm, numpy, av (PyAV), pillow and pytest; NOT Ray or boto3 (the lent machine
# reaches no package index). Uses the repository's .venv when there is one, else python3.
# Writes gpu_check.json (every figure) and gpu_check.md (a summary) into --out (default: $OUT,
# else ./gpu_check). Options: see `benchmarks/gpu_check.py --help`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
else
    PY="$(command -v python3)"
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
echo "[gpu_check] python: $PY" >&2
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
