"""Fail fast, fail clearly: what `stam-label run` checks before Ray starts or anything is created
(jobs/preflight.py), and which storage errors are retried (jobs/transient.py)."""
from __future__ import annotations

import pytest

from jobs.transient import is_transient


class CommitFailedError(Exception):
    """Stands in for deltalake's (classified by name)."""


class TableNotFoundError(Exception):
    pass


DELTA_NOT_A_DIR = ("Generic LocalFileSystem error\n  \x1b[31m↳\x1b[0m Unable to walk dir\n"
                   "   \x1b[31m↳\x1b[0m Not a directory (os error 20)\n")


@pytest.mark.parametrize("exc", [
    OSError("Generic S3 error: request timed out"),
    OSError("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate"),
    OSError("Generic S3 error: 503 Service Unavailable"),
    OSError("Connection reset by peer"),
    OSError("Throttling: Rate exceeded"),
    CommitFailedError("Transaction failed: a concurrent transaction deleted the same data"),
    OSError("something nobody has seen before"),  # unknown: the bounded retry is the safe side
])
def test_errors_that_can_pass_are_retried(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    OSError(DELTA_NOT_A_DIR),
    NotADirectoryError(20, "Not a directory"),
    FileNotFoundError(2, "No such file or directory"),
    PermissionError(13, "Permission denied"),
    OSError("When getting information for key 'x' in bucket 'b': AWS Error ACCESS_DENIED: Access Denied"),
    OSError("Generic S3 error: NoSuchBucket: The specified bucket does not exist"),
    OSError("Generic S3 error: dispatch failure: Operation not supported"),
    TableNotFoundError("no log files"),
])
def test_errors_no_retry_changes_fail_at_once(exc):
    assert not is_transient(exc)


def test_botocore_missing_credentials_is_not_retried():
    from botocore.exceptions import NoCredentialsError

    assert not is_transient(NoCredentialsError())
