"""Where each stage runs and how the driver joins Ray: the resource policy in one place."""
from __future__ import annotations

import logging
import os
import sys

from jobs.errors import JobError
from jobs.local_ray import LocalRayHead

log = logging.getLogger("stam_label")

# Non-secret S3 settings forwarded to the workers of a cluster joined with --address.
# Credentials never travel: a local Ray's workers inherit the driver's environment, and a
# cluster's nodes use their own chain (instance role, IRSA, mounted profile).
FORWARDED_AWS_SETTINGS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


# Tries of one batch before its block is given up as "lost" (jobs/ray_stages.py): a model actor
# that dies on the same batch three times is not going to label it.
MODEL_TRIES = 3


def connect_ray(address: str | None) -> None:
    """Join the Ray at ``address`` (or RAY_ADDRESS), else start a local one of the job's own."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        # The caller's Ray (a notebook, a test): its workers already have their settings, and
        # its DataContext and log levels stay as the caller set them.
        return
    address = address or os.environ.get("RAY_ADDRESS")
    runtime_env = None
    if address:
        # A cluster: forward only non-secret settings; its nodes bring their own credentials.
        env = {k: os.environ[k] for k in FORWARDED_AWS_SETTINGS if k in os.environ}
        log.info("forwarding AWS settings to Ray workers: %s", ", ".join(sorted(env)) or "none")
        runtime_env = {"env_vars": env} if env else None
    else:
        # A head of the run's own that dies with this process, even when it is killed
        # (jobs/local_ray.py); its workers inherit this environment, as a ray.init() local Ray's
        # do. (ray.init() alone would join the cluster last started with `ray start` on this
        # machine, /tmp/ray/ray_current_cluster, and wait for it when that cluster is gone.)
        log.info("starting a local Ray head for this run")
        address = LocalRayHead().start().address
    import ray

    from jobs.logs import native_stderr_to_ray_logs, quiet_ray

    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise JobError(f"cannot reach Ray at {address}: {exc}") from exc
    quiet_ray()
    native = native_stderr_to_ray_logs()
    if native:
        log.debug("native stderr of this process (Ray's core logs): %s", native)


def tolerate_faults(context, config) -> None:
    """What a run's DataContext needs to carry on when a node or a worker is lost.

    - A task that itself waited on a Ray actor or object on a lost node (Ray Data's own parquet
      footer readers while the plan is read, for one) fails with one of Ray's system errors
      raised as the task's exception, which Ray Data does not retry on its own; these are
      retried in the task (``retried_map_errors``, matched on the exception's class name).
    - A block that still fails is dropped instead of failing the run (``max_errored_blocks``):
      the end of the run reconciles its videos into "lost" rows.
    """
    import ray.exceptions as errors

    lost_node = (errors.ActorDiedError, errors.ActorUnavailableError, errors.ObjectLostError, errors.OwnerDiedError,
                 errors.ObjectFetchTimedOutError, errors.NodeDiedError, errors.WorkerCrashedError, errors.RaySystemError)
    context.retried_map_errors = [cls.__name__ for cls in lost_node]
    context.max_map_retries = config.decode_retries
    context.max_errored_blocks = -1


# What a stage (jobs/stage_list.py) says it is; placement decides what each kind gets.
LIGHT_TASK = "light task"  # a cheap reshaping of rows: Ray Data's default resources
CPU_TASK = "cpu task"  # decoding-like work: decode_options
MODEL_ACTOR = "model actor"  # holds the model: an actor pool, model_options
KINDS = (LIGHT_TASK, CPU_TASK, MODEL_ACTOR)


def stage_options(stage, config) -> dict:
    """map_batches parameters of a stage (jobs/stage_list.py), by its kind: the placement of
    every stage is decided here, from what the stage says it is."""
    if stage.kind == CPU_TASK:
        return decode_options(config)
    if stage.kind == MODEL_ACTOR:
        return model_options(config)
    return {}  # a light task: Ray Data's defaults (it fuses with the stage before it)


def decode_options(config) -> dict:
    """map_batches parameters of the decode (and windowing) tasks: resources and concurrency."""
    import ray

    from stam_core.video.decode_worker import decode_memory_limit

    options = {"num_cpus": 1 / config.decode_tasks_per_cpu}
    if ray.cluster_resources().get("stam_decode", 0) > 0:
        # Keep decoding off the GPU nodes; stam_decode counts CPUs like num_cpus does.
        options["resources"] = {"stam_decode": options["num_cpus"]}
    limit = decode_memory_limit(config.max_pixels)
    if limit:
        # Each decode task's worker process may use this much (its RLIMIT_DATA): Ray places no
        # more tasks on a node than its memory holds, so hostile files cannot take a node down.
        options["memory"] = limit
    if config.decode_workers:
        options["compute"] = ray.data.TaskPoolStrategy(size=config.decode_workers * config.decode_tasks_per_cpu)
    return options


def model_options(config) -> dict:
    """map_batches parameters of the model actors: a GPU each where there are GPUs, else no CPU reserved.

    Restarts and retries are Ray Data's defaults for an actor pool (an actor restarts where
    resources allow, its task is retried); jobs/ray_stages.py bounds the tries of one batch.
    """
    import ray

    # Idle OpenMP threads sleep instead of spinning (read when torch loads): on a CPU node a
    # spinning model thread burns the core that decoding needs. A value the user set wins.
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    options = {"runtime_env": {"env_vars": env}, "compute": ray.data.ActorPoolStrategy(size=config.model_workers)}
    if ray.cluster_resources().get("GPU", 0) > 0:
        options.update(num_gpus=config.gpus_per_worker, num_cpus=1)
    else:
        # Without GPUs the model timeshares the cores with decoding (its threads are set in
        # Labeler); reserving CPUs for it would idle them whenever it waits for clips.
        options["num_cpus"] = 0
    return options
