"""Where each stage runs and how the driver joins Ray: the resource policy in one place."""
from __future__ import annotations

import logging
import os

from jobs.errors import JobError

log = logging.getLogger("stam_label")

# Non-secret S3 settings forwarded to the workers of a cluster joined with --address.
# Credentials never travel: a local Ray's workers inherit the driver's environment, and a
# cluster's nodes use their own chain (instance role, IRSA, mounted profile).
FORWARDED_AWS_SETTINGS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


def connect_ray(address: str | None) -> None:
    import ray

    from jobs.logs import local_ray_auth_mode, quiet_ray

    if ray.is_initialized():
        # The caller's Ray (a notebook, a test): its workers already have their settings, and
        # its DataContext and log levels stay as the caller set them.
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        local_ray_auth_mode()
    runtime_env = None
    if address:
        # A cluster: forward only non-secret settings; its nodes bring their own credentials.
        env = {k: os.environ[k] for k in FORWARDED_AWS_SETTINGS if k in os.environ}
        log.info("forwarding AWS settings to Ray workers: %s", ", ".join(sorted(env)) or "none")
        runtime_env = {"env_vars": env} if env else None
    try:
        # No address: a Ray of the run's own ("local"). ray.init() alone would join the cluster last
        # started with `ray start` on this machine (/tmp/ray/ray_current_cluster), and wait for it
        # when that cluster is gone.
        ray.init(address=address or "local", runtime_env=runtime_env, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise JobError(f"cannot reach Ray at {address}: {exc}") from exc
    quiet_ray()


def decode_remote_args(config) -> tuple[dict, int | None]:
    """Ray options of the decode (and windowing) tasks, and how many may run at once."""
    import ray

    from stam_core.video.decode_worker import decode_memory_limit

    args = {"num_cpus": 1 / config.decode_tasks_per_cpu, "max_retries": config.decode_retries}
    if ray.cluster_resources().get("stam_decode", 0) > 0:
        # Keep decoding off the GPU nodes; stam_decode counts CPUs like num_cpus does.
        args["resources"] = {"stam_decode": args["num_cpus"]}
    limit = decode_memory_limit(config.max_pixels)
    if limit:
        # Each decode task's worker process may use this much (its RLIMIT_DATA): Ray places no
        # more tasks on a node than its memory holds, so hostile files cannot take a node down.
        args["memory"] = limit
    concurrency = config.decode_workers * config.decode_tasks_per_cpu if config.decode_workers else None
    return args, concurrency


def model_remote_args(config) -> dict:
    """Ray options of the model actors: a GPU each where there are GPUs, else no CPU reserved."""
    import ray

    # Idle OpenMP threads sleep instead of spinning (read when torch loads): on a CPU node a
    # spinning model thread burns the core that decoding needs. A value the user set wins.
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    args = {"max_restarts": 2, "max_task_retries": 2, "runtime_env": {"env_vars": env}}
    if ray.cluster_resources().get("GPU", 0) > 0:
        args.update(num_gpus=config.gpus_per_worker, num_cpus=1)
    else:
        # Without GPUs the model timeshares the cores with decoding (its threads are set in
        # Labeler); reserving CPUs for it would idle them whenever it waits for clips.
        args["num_cpus"] = 0
    return args
