"""What `stam-label run` checks before Ray starts or anything is created: INPUT and OUTPUT usable.

Without these checks a mistake surfaced late and slowly: an OUTPUT that is a file took 7
retries over 110 s, an S3 OUTPUT without credentials 110 s of AWS SDK warnings, a missing INPUT
was reported after Ray had started and had left an OUTPUT folder with a ``failed`` run record.
Each check here is a local stat or one S3 request without retries (a transient answer, 5xx or
throttling, skips the check with a warning: no verdict), and says what is wrong in
one line (a StorageError: exit 3). Nothing is written; the run's own write probe
(``LabelTable.check_writable``) still follows, as permissions can say yes here and no there.

    INPUT   a local folder, or a manifest file, exists and is readable; an S3 prefix or
            manifest object answers one request (bucket exists, access allowed)
    OUTPUT  not a file; locally its nearest existing folder is writable (unless --dry-run);
            on S3 the bucket answers one listing under OUTPUT
    S3      credentials resolve (botocore's chain, which honours AWS_EC2_METADATA_DISABLED;
            the instance-role lookup it may make is bounded by botocore to about a second)
"""
from __future__ import annotations

import logging
import os

from jobs.listing import input_kind, tree_root
from jobs.listing.s3 import refusal
from jobs.storage import StorageError, is_s3, local_key, local_path, s3_endpoint_and_region, split_s3
from jobs.transient import is_transient

log = logging.getLogger("stam_label")

PROBE_CONNECT_TIMEOUT_S = 5
PROBE_READ_TIMEOUT_S = 10
NO_CREDENTIALS = ("no AWS credentials found (looked in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                  "the shared credentials and config files, container and instance roles)")


def check(input_uri: str, output_uri: str, *, dry_run: bool = False) -> None:
    """Raise StorageError (one line naming INPUT or OUTPUT and the reason) when either cannot be used."""
    client = _s3_probe_client(input_uri if is_s3(input_uri) else output_uri) \
        if is_s3(input_uri) or is_s3(output_uri) else None
    check_input(input_uri, client)
    check_output(output_uri, client, writable=not dry_run)


def check_input(uri: str, client=None) -> None:
    """A folder or prefix is checked as the listing will use it (``jobs.listing.tree_root``);
    a manifest exists and is readable."""
    kind = input_kind(uri)
    if kind == "tree":
        try:
            tree_root(uri, client)
        except StorageError as exc:
            if exc.__cause__ is None or not is_transient(exc.__cause__):
                raise
            log.warning("%s: input not checked (%s); the run goes on and retries", uri, one_line(exc.__cause__))
        return
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not bucket:
            raise StorageError(f"{uri}: no bucket in the S3 URI")
        _ask(uri, "input manifest", lambda: client.head_object(Bucket=bucket, Key=key))
        return
    path = _local(uri)
    if not os.path.exists(path):
        raise StorageError(f"{uri}: input manifest does not exist")
    if not os.path.isfile(path):
        raise StorageError(f"{uri}: input manifest is not a file (a folder's URI ends with /)")
    if not os.access(path, os.R_OK):
        raise StorageError(f"{uri}: input manifest is not readable (permission denied)")


def check_output(uri: str, client=None, *, writable: bool = True) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not bucket:
            raise StorageError(f"{uri}: no bucket in the S3 URI")
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        _ask(uri, "output", lambda: client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1))
        return
    path = _local(uri)
    if os.path.exists(path) and not os.path.isdir(path):
        raise StorageError(f"{uri}: output is a file, not a folder (OUTPUT is a folder or an s3:// prefix)")
    existing = path
    while not os.path.exists(existing):  # the nearest existing folder is where OUTPUT will be made
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise StorageError(f"{uri}: output cannot be created: {existing} is a file, not a folder")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        where = "output folder" if existing == path else f"output cannot be created: {existing}"
        raise StorageError(f"{uri}: {where} is not writable (permission denied)")


def _local(uri: str) -> str:
    if "://" in uri and not uri.startswith("file://"):
        raise StorageError(f"{uri}: unsupported storage scheme (use a local path or s3://)")
    return local_path(local_key(uri))


def _s3_probe_client(uri: str):
    """A boto3 client for one request each, no retries and short timeouts: the run's own clients
    (jobs.storage) retry for minutes, which is what turned a wrong setting into a long wait."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise StorageError(f"{uri}: {NO_CREDENTIALS}")
    endpoint, region = s3_endpoint_and_region()
    config = Config(connect_timeout=PROBE_CONNECT_TIMEOUT_S, read_timeout=PROBE_READ_TIMEOUT_S,
                    retries={"total_max_attempts": 1})
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _ask(uri: str, what: str, request) -> None:
    """One S3 request; its refusal as a StorageError naming ``uri``, ``what`` it is and why.

    A transient answer is no refusal: the check is skipped with a warning rather than failing a
    run on a 503 that the run's own clients would have retried through."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        request()
    except NoCredentialsError as exc:
        raise StorageError(f"{uri}: {NO_CREDENTIALS}") from exc
    except (ClientError, BotoCoreError) as exc:
        if is_transient(exc):  # 5xx, throttling, a timeout: no verdict; the run's own clients retry it
            log.warning("%s: %s not checked (%s); the run goes on and retries", uri, what, one_line(exc))
            return
        reason = refusal(exc) if isinstance(exc, ClientError) else f"cannot reach S3 ({one_line(exc)})"
        raise StorageError(f"{uri}: {what}: {reason}") from exc


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
