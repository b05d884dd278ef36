"""The demo's local S3 server (moto) on 127.0.0.1; the tests use it too.

It sets the standard AWS environment (endpoint, dummy credentials, region) in this process,
so pyarrow, boto3 and the Ray workers started from here all reach it. moto comes with the
``demo`` extra (``pip install 'stam-label[demo]'``) and is imported only here, when a server
is made: nothing else in the package needs it.
"""
from __future__ import annotations

import os
from pathlib import Path

from jobs.errors import JobError
from jobs.storage import split_s3

_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
        "AWS_EC2_METADATA_DISABLED")


INSTALL_HINT = "the demo needs its local S3 server (moto): pip install 'stam-label[demo]'"


class DemoUnavailable(JobError):
    """moto (the demo extra) is not installed: the demo cannot start (exit 3); the message says what to install."""


class LocalS3:
    """moto's S3 server in a child process on 127.0.0.1.

    A child process, not moto's in-process thread: delta-rs keeps the GIL while it waits on
    S3, so a server inside the same interpreter could never answer it.
    """

    def __init__(self, log_path: str | Path | None = None):
        import importlib.util

        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
            raise DemoUnavailable(INSTALL_HINT)  # moto, or the server half of moto[server]
        self._saved: dict[str, str | None] = {}
        self._log_path = Path(log_path) if log_path else None
        self._log = None
        self._proc = None
        self.endpoint = ""

    def start(self) -> LocalS3:
        import socket
        import subprocess
        import sys
        import tempfile
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if self._log_path is None:
            self._log_path = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
        self._log = open(self._log_path, "w")
        # 127.0.0.1, not moto's default 0.0.0.0: nothing outside this machine should reach it.
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise JobError(f"the local S3 server did not start: {self._log_path.read_text()[-500:]}")
            time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{port}"
        values = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                  "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        for key in _ENV:
            self._saved[key] = os.environ.get(key)
            os.environ[key] = values[key]
        return self

    def request_log(self) -> str:
        """The server's request lines so far ("GET /bucket?list-type=2 HTTP/1.1" 200 ...)."""
        return self._log_path.read_text(errors="replace") if self._log_path else ""

    def stop(self) -> None:
        import subprocess

        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def upload(self, path: str | Path, uri: str) -> None:
        bucket, key = split_s3(uri)
        self.client().upload_file(str(path), bucket, key)
