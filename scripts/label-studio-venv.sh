#!/usr/bin/env bash
# Creates .venv-review at the repository root: Label Studio (a Django app with its own pinned
# dependencies) in a venv of its own, so it never changes the project's .venv. The review
# round-trip test (tests/test_review_label_studio.py) starts it from there as a child process.
# Reinstalls only when the pinned version below changes (kept in .venv-review/.stamp).
# Also keeps an empty, migrated database (.venv-review/template.sqlite3, `label-studio init`):
# the test copies it instead of migrating a new one (21 s -> 3 s to a ready server).
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
  rm -f .venv-review/template.sqlite3
  echo "$WANT" > .venv-review/.stamp
fi
if [ ! -f .venv-review/template.sqlite3 ]; then
  tmp=$(mktemp -d)
  # `init` migrates, then asks for a first user on stdin and fails on none: the users come at
  # `start` (the test's own). Whatever it leaves unmigrated, `start` migrates.
  env -u PYTHONPATH LATEST_VERSION_CHECK=false .venv-review/bin/label-studio init \
    --data-dir "$tmp" --database "$tmp/label_studio.sqlite3" </dev/null >"$tmp/init.log" 2>&1 || true
  if [ -s "$tmp/label_studio.sqlite3" ]; then mv "$tmp/label_studio.sqlite3" .venv-review/template.sqlite3; fi
  rm -rf "$tmp"
fi
