#!/usr/bin/env bash
# The README's demo command: set up .venv, then label built-in sample videos S3 -> S3.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
exec .venv/bin/stam-label demo "$@"
