"""Errors to exit codes: the job's typed errors (jobs.errors) become one line and a documented code.

``Failure`` is an ``Error: ...`` line on stderr with its code; ``cli_errors`` wraps a command so
that JobError, StorageError and Ctrl-C exit with their codes (docs/usage.md) and anything else,
a bug, exits 4 saying so, its traceback logged only under -v.
"""
from __future__ import annotations

import functools
import logging

import click

from jobs.errors import EXIT_CANNOT_START, EXIT_FAILED, EXIT_INTERRUPTED, JobError
from jobs.storage import StorageError

log = logging.getLogger("stam_label")


class Failure(click.ClickException):
    """A one-line ``Error: ...`` on stderr and a documented exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(exc: BaseException) -> int | None:
    """The documented exit code of a known error; None for anything else (a bug)."""
    if isinstance(exc, JobError):
        return exc.exit_code
    if isinstance(exc, StorageError):
        return EXIT_CANNOT_START
    return None


def one_line(exc: BaseException) -> str:
    """The error's message on one line (the type's name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def cli_errors(fn):
    """Turn the job's typed errors (and Ctrl-C) into ``Error: ...`` and their exit codes."""
    if getattr(fn, "_stam_cli_errors", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise Failure("interrupted; the rows committed so far are kept (a rerun labels the rest)",
                          EXIT_INTERRUPTED) from None
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                log.debug("unexpected error", exc_info=True)
                raise Failure(f"{type(exc).__name__}: {one_line(exc)} (unexpected; -v logs the traceback)",
                              EXIT_FAILED) from None
            log.debug("%s", type(exc).__name__, exc_info=True)
            raise Failure(one_line(exc), code) from None

    wrapper._stam_cli_errors = True
    return wrapper
