"""Links from the page to the videos: file:// for local ones, presigned HTTPS for s3:// ones."""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from collections.abc import Callable

from jobs.storage import is_s3, split_s3
from stam_core.storage import s3_endpoint_and_region

PRESIGN_EXPIRES = 24 * 3600  # default --presign-expires, seconds
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days

Presigner = Callable[[str], str]


def s3_presigner(expires_s: int = PRESIGN_EXPIRES) -> Presigner:
    """A function giving a presigned GET URL for an s3:// URI, valid ``expires_s`` seconds.

    Signing is local (no request is made); it uses the standard AWS configuration and
    ``AWS_ENDPOINT_URL(_S3)`` like the rest of the tool. The URLs carry a signature, so they are
    never logged: botocore's debug log (which prints signatures) is held at WARNING while signing.
    """
    import boto3
    from botocore.config import Config

    endpoint, region = s3_endpoint_and_region()
    with _quiet_botocore():
        client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                              config=Config(signature_version="s3v4"))

    def presign(uri: str) -> str:
        bucket, key = split_s3(uri)
        with _quiet_botocore():
            return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                 ExpiresIn=expires_s)

    return presign


@contextlib.contextmanager
def _quiet_botocore():
    loggers = [logging.getLogger(name) for name in ("botocore", "boto3", "urllib3")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def video_href(uri: str, presign: Presigner | None = None) -> str | None:
    """Where a card's link points: a percent-encoded file:// URI for a local video, a presigned
    https URL for an s3:// one when ``presign`` is given, else None (the URI is shown as text)."""
    if is_s3(uri):
        return presign(uri) if presign else None
    if "://" in uri:
        return None
    return pathlib.Path(os.path.abspath(uri)).as_uri()
