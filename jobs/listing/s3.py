"""S3 through boto3: prefix listings page by page, HeadObject stats, and driver-side reads whose
failures become one StorageError line.

The client (``jobs.storage.s3_client``) comes from the standard AWS environment each worker
inherits. Only prefix-scoped
requests are made: ListObjectsV2 under the input prefix, HeadObject/GetObject of objects.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from jobs.listing.rows import Rows, short
from jobs.storage import StorageError, split_s3
from jobs.storage import s3_client as client

STAT_THREADS = 16  # concurrent HeadObject requests per batch
S3_LIST_CPUS = 0.25  # S3 listing waits on the network; local listing takes a whole CPU
NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def s3_version(size: int, modified: dt.datetime) -> str:
    # Whole seconds: S3's HeadObject (Last-Modified) has no finer resolution than its listings.
    return f"{size}:{int(modified.timestamp()) * 1_000_000_000}"


def error_code(exc) -> str:
    """The S3 error code of a botocore ClientError ("404", "NoSuchKey", "AccessDenied", ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def reading(uri: str, what: str) -> Iterator[None]:
    """Requests for the object ``uri`` on the driver: a missing object or any refusal is a
    StorageError naming the input and ``what`` it is ("manifest", "inventory manifest")."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            raise StorageError(f"{uri}: {what} does not exist") from exc
        raise StorageError(f"{uri}: cannot read {what} ({short(exc)})") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{uri}: cannot read {what} ({short(exc)})") from exc


def check_prefix(input_uri: str, bucket: str, prefix: str, s3=None) -> None:
    """One prefix-scoped listing request (with ``s3``, else the run's client): a missing bucket
    or a refusal fails now, as a StorageError whose cause is the botocore error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        (s3 or client()).list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=1)
    except ClientError as exc:
        raise StorageError(f"{input_uri}: input: {refusal(exc)}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{input_uri}: input: cannot reach S3 ({short(exc)})") from exc


def refusal(exc) -> str:
    """Why S3 refused a request (a botocore ClientError), in words."""
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    if code == "NoSuchBucket":
        return "bucket does not exist"
    if code in NOT_FOUND:
        return "does not exist"
    if code in ("403", "AccessDenied", "AllAccessDisabled"):
        return "access denied (the credentials found are not allowed to read it)"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return f"the AWS credentials were refused ({code})"
    return f"{code}: {message}" if message else code or "refused"


def s3_pages(dir_uri: str, exts: tuple[str, ...], rows: Rows, delimiter: bool = False) -> Iterator[None]:
    """List a prefix page by page into ``rows`` (yields after each page). With a delimiter,
    sub-prefixes become _dir rows. A failure becomes one list_error row for the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(dir_uri)
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = "/"
    try:
        for page in client().get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key.lower().endswith(exts):  # "x.mp4/" (a folder marker) does not end so
                    rows.add(f"s3://{bucket}/{key}", obj["Size"], s3_version(obj["Size"], obj["LastModified"]))
            for sub in page.get("CommonPrefixes", ()):
                rows.add_dir(f"s3://{bucket}/{sub['Prefix']}")
            yield
    except (ClientError, BotoCoreError) as exc:
        rows.fail(dir_uri, "list_error", f"cannot list prefix ({short(exc)})")
        yield


def s3_stat(uris: list[str]) -> list[tuple]:
    """(size, version, kind, reason) for each s3:// URI, by HeadObject (GetObject permission)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client()

    def one(uri: str) -> tuple:
        bucket, key = split_s3(uri)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = error_code(exc)
            if code in NOT_FOUND:
                return None, None, "not_found", "no such object"
            if code in ("403", "AccessDenied", "Forbidden"):
                return None, None, "read_error", ("access denied (S3 answers 403 also for a missing object "
                                                  "when the caller may not list the bucket)")
            return None, None, "read_error", f"cannot stat ({short(exc)})"
        except BotoCoreError as exc:
            return None, None, "read_error", f"cannot stat ({short(exc)})"
        size = head["ContentLength"]
        return size, s3_version(size, head["LastModified"]), None, None

    if len(uris) <= 1:
        return [one(u) for u in uris]
    with ThreadPoolExecutor(min(STAT_THREADS, len(uris))) as pool:
        return list(pool.map(one, uris))
