"""The job's typed errors and the exit code each one means (documented in docs/usage.md; jobs.cli.errors exits with it)."""
from __future__ import annotations

# 0: success; 2: bad arguments (click exits with it itself)
EXIT_TOO_MANY_ERRORS = 1  # over --max-error-rate, or every processed video failed
EXIT_CANNOT_START = 3  # input, output, weights or Ray unusable
EXIT_FAILED = 4  # failed mid-run (e.g. commits still failing after their retries)
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: what was labelled is committed


class JobError(Exception):
    """The run cannot start; the message is one line for the user."""

    exit_code = EXIT_CANNOT_START


class JobFailed(JobError):
    """The run started and then failed (its run record says ``failed`` with this reason)."""

    exit_code = EXIT_FAILED


class JobInterrupted(JobError):
    """SIGINT/SIGTERM: committed what was labelled, run record ``interrupted``."""

    exit_code = EXIT_INTERRUPTED
