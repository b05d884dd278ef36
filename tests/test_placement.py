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


def test_stage_options_are_rays_public_map_batches_parameters(ray_head):
    """Resources and concurrency through map_batches' own parameters (compute=, num_cpus=, ...):
    nothing through the deprecated **ray_remote_args, and no deprecation warning."""
    import inspect
    import warnings

    from jobs.placement import decode_options, model_options
    from jobs.ray_stages import ModelActor, decode_task

    if not ray.is_initialized():
        ray.init(address=ray_head)
    config = JobConfig(input_uri="in", output_uri="out", weights="w", decode_workers=2, model_workers=3)
    decode, model = decode_options(config), model_options(config)
    assert isinstance(decode["compute"], ray.data.TaskPoolStrategy) and decode["compute"].size == 4
    assert isinstance(model["compute"], ray.data.ActorPoolStrategy) and model["compute"].max_size == 3
    assert model["num_cpus"] == 0 and "num_gpus" not in model  # no GPU on the test head
    named = set(inspect.signature(ray.data.Dataset.map_batches).parameters)
    assert set(decode) <= named and set(model) <= named, (set(decode) | set(model)) - named
    from ray.util.annotations import RayDeprecationWarning

    with warnings.catch_warnings():
        # What map_batches warns with for **ray_remote_args; Ray's DataContext emits plain
        # DeprecationWarnings of its own whenever it is copied, whatever the caller does.
        warnings.simplefilter("error", RayDeprecationWarning)
        ds = ray.data.range(2).map_batches(decode_task, fn_kwargs={"tries": None, "max_tries": 1}, **decode)
        ds.map_batches(ModelActor, fn_constructor_kwargs={"tries": None, "max_tries": 1}, **model)


def test_a_batch_is_given_up_after_its_tries(ray_head):
    """The tries of one batch are counted across processes; past the limit the batch raises."""
    import pyarrow as pa

    from jobs import ray_stages

    if not ray.is_initialized():
        ray.init(address=ray_head)
    counter = ray_stages.new_try_counter()
    try:
        batch = pa.table({"video_uri": ["a.mp4", "b.mp4"]})
        for _ in range(2):
            ray_stages.count_try(counter, batch, 2, "decode")
        ray_stages.count_try(counter, pa.table({"video_uri": ["c.mp4"]}), 2, "decode")  # another batch
        with pytest.raises(ray_stages.TooManyTries, match=r"each of 2 tries of a batch of 2 \(first a.mp4\)"):
            ray_stages.count_try(counter, batch, 2, "decode")
    finally:
        ray_stages.stop_try_counter(counter)
