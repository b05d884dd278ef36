"""S3 through boto3: prefix listings page by page, HeadObject stats, and driver-side reads whose
failures become one StorageError line.

The client comes from the standard AWS environment each worker inherits; endpoint and region
are read as everywhere else (``stam_core.storage.s3_endpoint_and_region``). Only prefix-scoped
requests are made: ListObjectsV2 under the input prefix, HeadObject/GetObject of objects.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from jobs.listing.rows import Rows, short
from jobs.storage import StorageError
from stam_core.storage import s3_endpoint_and_region

STAT_THREADS = 16  # concurrent HeadObject requests per batch
S3_LIST_CPUS = 0.25  # S3 listing waits on the network; local listing takes a whole CPU
NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
_CLIENTS: dict[tuple, object] = {}


def client():
    """A boto3 S3 client from this process's AWS environment (one per configuration)."""
    import boto3
    from botocore.config import Config

    endpoint, region = s3_endpoint_and_region()
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    if key not in _CLIENTS:
        config = Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 8},
                        max_pool_connections=STAT_THREADS)
        _CLIENTS[key] = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                                       config=config)
    return _CLIENTS[key]


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


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


def check_prefix(input_uri: str, bucket: str, prefix: str) -> None:
    """One prefix-scoped listing request on the driver: a missing bucket or a refusal fails now."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client().list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=1)
    except ClientError as exc:
        why = "bucket does not exist" if error_code(exc) == "NoSuchBucket" else f"cannot list input ({short(exc)})"
        raise StorageError(f"{input_uri}: {why}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{input_uri}: cannot list input ({short(exc)})") from exc


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
