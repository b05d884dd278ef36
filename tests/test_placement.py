"""Placement on a heterogeneous cluster: decoding on CPU nodes, the model on the GPU node.

One machine stands in for a cluster (ray.cluster_utils.Cluster): a head that runs no work, a
decode node declaring `stam_decode` (as ray_cluster.yaml's CPU workers do) and a node that
declares one GPU (a declared resource; torch finds no CUDA here and runs on the CPU).
"""
from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")  # the GPU check runs the tests on a machine without Ray
from ray.cluster_utils import Cluster

from jobs.pipeline import JobConfig, run_job
from jobs.tools.samples import make_sample_video


@pytest.fixture
def cluster(ray_head):  # after the session head exists, so this test can hand Ray back to it
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    decode = c.add_node(num_cpus=2, resources={"stam_decode": 2})
    gpu = c.add_node(num_cpus=1, num_gpus=1)
    c.wait_for_nodes()
    try:
        yield c, decode.node_id, gpu.node_id
    finally:
        ray.shutdown()
        c.shutdown()


def test_decode_on_cpu_nodes_model_on_gpu_node(cluster, tmp_path, tiny_weights):
    c, decode_node, gpu_node = cluster
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        make_sample_video(videos / f"v{i}.mp4", seed=i, seconds=1.0, fps=10, size=(96, 64))
    out = tmp_path / "out"
    summary = run_job(JobConfig(input_uri=str(videos), output_uri=str(out), weights=str(tiny_weights),
                                address=c.address, batch_size=2, gpus_per_worker=1.0))
    assert summary.ok == 4
    assert summary.placement["decode"] == {decode_node: 4}
    assert summary.placement["model"] == {gpu_node: 4}
    manifest = json.loads((out / "_runs" / f"{summary.run_id}.json").read_text())
    assert manifest["placement"] == summary.placement


def test_a_callers_ray_session_keeps_its_data_context(ray_head, tmp_path, tiny_weights):
    """run_job in a notebook's Ray session: the caller's DataContext is as the caller set it, after."""
    if not ray.is_initialized():
        ray.init(address=ray_head)
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks
    ctx.enable_progress_bars, ctx.max_errored_blocks = True, 0
    try:
        videos = tmp_path / "videos"
        videos.mkdir()
        make_sample_video(videos / "v.mp4", seed=1, seconds=1.0, fps=8, size=(96, 64))
        summary = run_job(JobConfig(input_uri=str(videos), output_uri=str(tmp_path / "out"),
                                    weights=str(tiny_weights), batch_size=2))
        assert summary.ok == 1
        assert (ctx.enable_progress_bars, ctx.max_errored_blocks) == (True, 0)
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks = saved
