#!/usr/bin/env bash
# The README's test command: set up .venv, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
# Two pytest-xdist workers, a test file each at a time (a Ray head and an S3 server each): most of
# the suite waits on Ray workers starting and on real runs, so two overlap well on 2 cores; more
# start Ray worker processes faster than 2 cores can (4 workers: load average 47, slower).
# STAM_TEST_WORKERS=0 runs one test at a time; arguments after it override (-n 0).
exec .venv/bin/python -m pytest -q -n "${STAM_TEST_WORKERS:-2}" --dist loadfile "$@"
