"""The one S3 configuration of stam_core (and of jobs, which imports it): ``s3_filesystem``.

pyarrow, not boto3: stam_core stays free of the AWS SDK. The endpoint variables are the
standard ones boto3 reads too, so a local S3 server works for both. Must not import torch.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

_S3: dict[tuple, Any] = {}
S3_MAX_ATTEMPTS = 10
S3_CONNECT_TIMEOUT_S = 10.0
S3_REQUEST_TIMEOUT_S = 60.0


def s3_filesystem():
    """A pyarrow S3FileSystem from the standard AWS environment (AWS_ENDPOINT_URL for local servers)."""
    import pyarrow.fs as pafs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = (endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    if key not in _S3:  # one per configuration: creating it resolves credentials
        kwargs: dict[str, Any] = {}
        if endpoint:
            parsed = urlparse(endpoint)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
        if region:
            kwargs["region"] = region
        # The AWS SDK's defaults (3 attempts, a request timeout of a few seconds) fail a read
        # during an ordinary burst of 503 SlowDown or a slow answer: be deliberate about both.
        _S3[key] = pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
                                     connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
                                     **kwargs)
    return _S3[key]
