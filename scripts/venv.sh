#!/usr/bin/env bash
# Creates or refreshes .venv at the repository root. Reinstalls only when pyproject.toml
# changed since the last install (its hash is kept in .venv/.stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat .venv/.stamp 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,demo]'
  echo "$want" > .venv/.stamp
fi
