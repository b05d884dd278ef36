#!/usr/bin/env bash
# Creates .venv-review at the repository root: Label Studio (a Django app with its own pinned
# dependencies) in a venv of its own, so it never changes the project's .venv. The review
# round-trip test (tests/test_review_label_studio.py) starts it from there as a child process.
# Reinstalls only when the pinned version below changes (kept in .venv-review/.stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WANT="label-studio==1.23.2"
if [ ! -x .venv-review/bin/python ]; then
  "$PY" -m venv .venv-review
fi
if [ "$(cat .venv-review/.stamp 2>/dev/null || true)" != "$WANT" ]; then
  .venv-review/bin/pip install -q --upgrade pip
  .venv-review/bin/pip install -q "$WANT"
  echo "$WANT" > .venv-review/.stamp
fi
