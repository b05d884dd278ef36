"""Which storage errors are worth another try: the one rule for the table's reads and commits.

Retrying is for what can pass by itself (timeouts, dropped connections, 5xx, throttling, a
concurrent commit). A missing path, a file where a folder should be, a refused permission or
missing credentials do not change in two minutes: retrying them only delays the answer (a
run on an OUTPUT that was a file retried 7 times over 110 s before saying so).

delta-rs and pyarrow report most errors as a plain OSError or DeltaError with the cause in
the text (several lines: ``Generic LocalFileSystem error ... Not a directory (os error 20)``),
so the text is read as well as the type. An error that matches neither list is retried: the
bounded retry is the safe side for what we do not recognise.
"""
from __future__ import annotations

# Lower-case fragments of messages that no retry will change ("_" read as a space).
PERMANENT = (
    "not a directory", "is a directory", "no such file", "not found", "nosuchbucket", "nosuchkey",
    "permission denied", "access denied", "accessdenied", "forbidden", "status code: 403", "403 forbidden",
    "no such bucket", "no such key", "invalid access key id", "signature does not match",
    "invalidaccesskeyid", "signaturedoesnotmatch", "unable to locate credentials", "no credentials",
    "credentials provider", "operation not supported",
)
# Fragments that say "try again". Checked first: a message naming both is retried, the safe side
# (a wrong retry costs time; a wrong give-up fails the run).
TRANSIENT = (
    "timed out", "timeout", "connection reset", "connection refused", "connection closed", "broken pipe",
    "slowdown", "slow down", "throttl", "too many requests", "service unavailable", "serviceunavailable",
    "bad gateway", "connection was closed", "requesttimeout",
    "internal server error", "internalerror", "temporarily", "try again",
)
# Permanent by type, whatever the message (pyarrow maps errno to these subclasses).
PERMANENT_TYPES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
# Permanent by type name, so this module imports neither deltalake nor botocore.
PERMANENT_TYPE_NAMES = {"TableNotFoundError", "NoCredentialsError", "PartialCredentialsError",
                        "SchemaMismatchError", "DeltaProtocolError"}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` may pass if the same request is tried again a little later."""
    if type(exc).__name__ == "CommitFailedError":  # a concurrent commit: a fresh snapshot resolves it
        return True
    if isinstance(exc, PERMANENT_TYPES) or any(t.__name__ in PERMANENT_TYPE_NAMES for t in type(exc).__mro__):
        return False
    status = _http_status(exc)
    if status is not None:  # botocore's ClientError: the server's answer says it
        return status >= 500 or status in (408, 429)
    text = str(exc).lower().replace("_", " ")  # pyarrow spells codes ACCESS_DENIED, NO_SUCH_BUCKET
    if any(fragment in text for fragment in TRANSIENT):
        return True
    return not any(fragment in text for fragment in PERMANENT)


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError (its ``response``), else None."""
    response = getattr(exc, "response", None)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return status if isinstance(status, int) else None
