"""The Ray side of the stages: what wraps the plain stage bodies inside Ray tasks and actors.

The bodies (jobs/stages/) take Arrow and give Arrow, without calling Ray. Here they get the
node they run on, and every try of a batch is counted, so that retries stay bounded.

Why count: Ray Data retries a map task whose worker died (a lost node, the out-of-memory
killer) and restarts a model actor, both without limit by default, and Ray 2.60's public API
offers no bound on either (``max_retries``/``max_restarts`` only travel through
``**ray_remote_args``, deprecated and removed in Ray 2.64). Unlimited retries are what a lost
node needs, but a batch that kills its worker on every try would be retried forever. So each
try of a batch is counted by a small actor of the run, and a try past the limit raises
``TooManyTries``: the block fails, Ray Data drops it (``max_errored_blocks``), and the end of
the run records its videos as "lost" (jobs/commit.py ``reconcile``).
"""
from __future__ import annotations

import hashlib

import pyarrow as pa

from jobs.stages.decode import decode_videos
from jobs.stages.label import Labeler, LabelParams
from jobs.stages.windows import expand_windows


class TooManyTries(RuntimeError):
    """A batch whose worker died on each of its allowed tries (one message argument: picklable)."""


class TryCounter:
    """Tries per batch key, in one actor of the run (``new_try_counter``)."""

    def __init__(self):
        self._tries: dict[str, int] = {}

    def next_try(self, key: str) -> int:
        self._tries[key] = self._tries.get(key, 0) + 1
        return self._tries[key]


def new_try_counter():
    """The run's TryCounter actor, on the driver's node (the head's, for a local Ray)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # No CPU reserved: it answers a few calls per batch. No constructor arguments, so Ray can
    # restart it from its class alone (the counts start again; the bound still holds per life).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(TryCounter).options(num_cpus=0, max_restarts=-1, max_task_retries=-1,
                                          scheduling_strategy=here).remote()


def stop_try_counter(counter) -> None:
    """End the run's TryCounter (in a caller's long-lived Ray session it would stay)."""
    import ray

    ray.kill(counter)


def count_try(counter, batch: pa.Table, max_tries: int, stage: str) -> None:
    """Raise TooManyTries when this batch has been tried max_tries times already."""
    import ray

    key = _batch_key(batch)
    tries = ray.get(counter.next_try.remote(f"{stage}:{key}"))
    if tries > max_tries:
        first = batch["video_uri"][0].as_py() if batch.num_rows else "?"
        raise TooManyTries(f"{stage}: the worker died on each of {max_tries} tries of a batch of {batch.num_rows} "
                           f"(first {first}); giving it up")


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def decode_task(batch: pa.Table, *, tries, max_tries: int, **kwargs) -> pa.Table:
    """jobs.stages.decode.decode_videos in a Ray task."""
    count_try(tries, batch, max_tries, "decode")
    return decode_videos(batch, node=node_id(), **kwargs)


def windows_task(batch: pa.Table, *, tries, max_tries: int, **kwargs) -> pa.Table:
    """jobs.stages.windows.expand_windows in a Ray task."""
    count_try(tries, batch, max_tries, "windows")
    return expand_windows(batch, **kwargs)


class ModelActor:
    """jobs.stages.label.Labeler in a Ray actor (one model per actor)."""

    def __init__(self, *, tries, max_tries: int, params: LabelParams):
        self.tries, self.max_tries = tries, max_tries
        self.labeler = Labeler(params, node=node_id())

    def __call__(self, batch: pa.Table) -> pa.Table:
        count_try(self.tries, batch, self.max_tries, "model")
        return self.labeler(batch)


def _batch_key(batch: pa.Table) -> str:
    # A retried task gets the same input rows: the work items' identity names the batch.
    digest = hashlib.sha1()
    for name in ("video_uri", "start_s", "end_s"):
        if name in batch.column_names:
            digest.update(repr(batch[name].to_pylist()).encode())
    return digest.hexdigest()
