"""The pipeline's stages as data: each ``Stage`` says what it runs, the Arrow schemas it takes
and gives, how it is placed (``kind``) and its parameters. pipeline.py chains them in order;
jobs/placement.py turns a stage's ``kind`` into Ray resources.

To add a stage: write its body in jobs/stages/ (Arrow in, Arrow out, no Ray), its Ray wrapper
in jobs/ray_stages.py (tries counted, node id), and one ``Stage`` in ``stages()`` below.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from jobs import ray_stages
from jobs.placement import CPU_TASK, KINDS, LIGHT_TASK, MODEL_ACTOR, MODEL_TRIES
from jobs.schema import output_schema
from jobs.stages.label import LabelParams
from jobs.stages.records import WORK_ITEM, decoded_schema, labelled_schema, to_work_items


@dataclass(frozen=True)
class Stage:
    """One step of the Ray Data chain. ``params`` go to a task's body as keyword arguments,
    or to an actor's constructor; ``input_schema`` None: the plan's rows (jobs/plan.py)."""

    name: str
    body: Callable
    kind: str
    input_schema: pa.Schema | None
    output_schema: pa.Schema
    batch_size: int | None = None  # None: a whole block
    params: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name}: kind {self.kind!r} is not one of {KINDS}")


def stages(config, info, tries, label: LabelParams) -> list[Stage]:
    """The run's stages in the order the data flows (``info``: the checkpoint's
    ``stam_core.model.CheckpointInfo``; ``tries``: the run's try counter, jobs/ray_stages.py)."""
    decode_tries = {"tries": tries, "max_tries": 1 + config.decode_retries}
    decoded = decoded_schema(info.num_frames)
    out = [Stage("work items", to_work_items, LIGHT_TASK, None, WORK_ITEM)]
    if config.window_s is not None:
        # A video per task: each becomes many windows, decoded videos_per_task at a time.
        out.append(Stage("windows", ray_stages.windows_task, CPU_TASK, WORK_ITEM, WORK_ITEM, batch_size=1,
                         params={**decode_tries, "window": config.window_s, "stride": config.stride_s,
                                 "timeout": config.decode_timeout, "max_pixels": config.max_pixels,
                                 "max_windows": config.max_windows}))
    out.append(Stage("decode", ray_stages.decode_task, CPU_TASK, WORK_ITEM, decoded,
                     batch_size=config.videos_per_task,
                     params={**decode_tries, "num_frames": info.num_frames, "timeout": config.decode_timeout,
                             "max_pixels": config.max_pixels, "resize": config.resize}))
    labelled = labelled_schema(output_schema(info.embed_dim if label.embeddings else 0, label.probs))
    out.append(Stage("label", ray_stages.ModelActor, MODEL_ACTOR, decoded, labelled, batch_size=config.batch_size,
                     params={"tries": tries, "max_tries": MODEL_TRIES, "params": label}))
    return out


def chain(ds, stages_: list[Stage], options: Callable[[Stage], dict]):
    """``ds`` through each stage in turn; ``options(stage)``: its placement (jobs/placement.py)."""
    for stage in stages_:
        passed = "fn_constructor_kwargs" if stage.kind == MODEL_ACTOR else "fn_kwargs"
        extra = {passed: dict(stage.params)} if stage.params else {}
        ds = ds.map_batches(stage.body, batch_size=stage.batch_size, batch_format="pyarrow", **options(stage),
                            **extra)
    return ds
