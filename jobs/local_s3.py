"""A local S3 server (moto) on 127.0.0.1 for the demo and the tests.

It sets the standard AWS environment (endpoint, dummy credentials, region) in this process,
so pyarrow, boto3 and the Ray workers started from here all reach it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
        "AWS_EC2_METADATA_DISABLED")


class LocalS3:
    def __init__(self):
        from moto.server import ThreadedMotoServer

        # 127.0.0.1, not moto's default 0.0.0.0: nothing outside this machine should reach it.
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._saved: dict[str, str | None] = {}
        self.endpoint = ""

    def start(self) -> "LocalS3":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        values = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                  "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        for key in _ENV:
            self._saved[key] = os.environ.get(key)
            os.environ[key] = values[key]
        return self

    def stop(self) -> None:
        self._server.stop()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def upload(self, path: str | Path, uri: str) -> None:
        bucket, key = uri[len("s3://"):].split("/", 1)
        self.client().upload_file(str(path), bucket, key)
