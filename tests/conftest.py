"""Shared fixtures: a local S3 server, a Ray head started the way users start one, a tiny checkpoint."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # tests import their helpers (conftest, support/) as top-level modules
VENV_BIN = Path(sys.executable).parent
RAY_HEAD: dict = {}  # the session head's temp dir (its logs), for tests that read them


@pytest.fixture(scope="session")
def local_s3():
    from jobs.tools.demo_s3 import LocalS3

    with LocalS3() as s3:
        yield s3


@pytest.fixture(scope="session")
def ray_head(local_s3, tmp_path_factory):
    """A Ray head started with `ray start --head`, as on a real cluster; yields its address.

    Started after the S3 server so its workers inherit the S3 settings too. Token
    authentication is off on both sides (Ray 2.60 turns it on for new clusters). `--block`
    keeps the head in one process group, so teardown stops this head only (`ray stop`
    would stop every Ray on the machine).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["RAY_AUTH_MODE"] = "disabled"
    temp_dir = tmp_path_factory.mktemp("ray")
    RAY_HEAD["temp_dir"] = temp_dir
    log = open(temp_dir / "ray-start.log", "w")
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
           "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp_dir}"]
    head = subprocess.Popen(cmd, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"

    def ready():
        if head.poll() is not None:
            raise AssertionError(f"ray start failed: {(temp_dir / 'ray-start.log').read_text()[-2000:]}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(ready, 120, "the Ray head")
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """An official-format checkpoint of the small test configuration (8 frames)."""
    import torch

    import stam_core.model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "stam_tiny.pth"
    stam_core.model.save_checkpoint(stam_core.model.create_model("stam_tiny"), path)
    return path


@pytest.fixture(scope="session")
def windowed_labels(tmp_path_factory, tiny_weights, ray_head) -> Path:
    """A label table of one 5-s video labelled in 2-s windows (read-only: export and report read it)."""
    from jobs.pipeline import run_job
    from jobs.tools.samples import make_sample_video

    root = tmp_path_factory.mktemp("windowed")
    (root / "videos").mkdir()
    make_sample_video(root / "videos" / "five.mp4", seed=4, seconds=5.0, fps=4, size=(96, 64))
    out = root / "labels"
    run_job(job_config(tiny_weights, root / "videos", out, ray_head, window_s=2.0))
    return out


def job_config(weights, input_uri, output_uri, address, **kw):
    """A JobConfig for tests: the tiny model in small batches on the test Ray head."""
    from jobs.pipeline import JobConfig

    kw.setdefault("batch_size", 4)
    return JobConfig(input_uri=str(input_uri), output_uri=str(output_uri), weights=str(weights), address=address,
                     decode_timeout=60, **kw)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
