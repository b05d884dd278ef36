"""STAM checkpoints: ``load_model`` (a trained model), ``save_checkpoint``, and
``read_checkpoint_info`` (what the driver needs to know, without building the model).

Weights are named as a release (``stam_core.RELEASES``), a local path or an http(s)/s3 URL;
``stam_core.weights`` turns that into a local file and checks sha256 pins. The files hold the
official key names; reading and checking them is ``stam_core.model.state_dict``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Optional, Union

import torch

from stam_core.checkpoint_header import CheckpointInfo  # defined without torch, for the driver
from stam_core.errors import CheckpointError
from stam_core.model.network import STAM, module_to_official
from stam_core.model.precision import check_precision
from stam_core.model.state_dict import (
    check_state,
    map_state_dict,
    model_from_state,
    read_state_dict,
)
from stam_core.storage import atomic_output
from stam_core.weights import RELEASES, check_sha256, checked_file, locate, release_pin

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def save_checkpoint(model: STAM, path: PathLike) -> Path:
    """Write `model` as an official-format checkpoint, plus its config: {"model": ..., "config": ...}.

    The config (plain ints) is what lets load_model rebuild non-official sizes, whose head
    counts cannot be read from the weights' shapes. Written atomically (``atomic_output``).
    """
    if not isinstance(model, STAM):
        raise TypeError(f"save_checkpoint takes a STAM model, got {type(model).__name__}")
    state = {module_to_official(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_output(path) as f:
        torch.save({"model": state, "config": dataclasses.asdict(model.config), "name": model.name}, f)
    return path


def load_model(weights: PathLike, *, device: Union[str, torch.device] = "cpu", precision: str = "auto",
               sha256: Optional[str] = None, compile: bool = False) -> STAM:
    """A trained STAM in eval mode on `device`.

    weights: a release name (stam_core.RELEASES), a local path, or an http(s)/s3 URL
    (downloaded once into the cache). sha256 pins the file. precision: "fp32", "bf16", "fp16"
    or "auto" (bf16 on CUDA with bf16, fp16 on other CUDA, bf16 on a CPU with AVX512-BF16 or
    AMX, else fp32). compile=True wraps the network in torch.compile (meant for CUDA).
    """
    device = torch.device(device)
    check_precision(precision)  # before any download
    pin = release_pin(weights, sha256)
    path, _ = locate(weights, pin)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    # Hash the very bytes that are loaded: the recorded sha256 is the provenance of these weights.
    digest = hashlib.sha256(data).hexdigest()
    check_sha256(path, digest, pin)
    state, stored_config = read_state_dict(data, path)
    model = model_from_state(state, stored_config, path)
    model.weights_sha256 = digest
    model.weights_source = os.fspath(weights)
    model.to(device).eval()
    model.set_precision(precision)
    if compile:
        # Compile the submodules in place (not the wrapper): state-dict keys and attributes stay.
        model.spatial.compile()
        model.temporal.compile()
        log.info("STAM: torch.compile enabled (the first batch of each shape compiles)")
    log.info("loaded STAM from %s: %d frames, %d classes, embed %d, sha256 %s, %s on %s",
             path, model.num_frames, model.num_classes, model.embed_dim, digest[:12], model.precision, model.device)
    return model


def read_checkpoint_info(weights: PathLike, *, sha256: Optional[str] = None) -> CheckpointInfo:
    """Metadata of a checkpoint, validated like load_model does, with its tensors memory-mapped.

    No model is built: the network is checked on the meta device, and the weights' bytes are
    hashed in chunks, so the driver's memory does not grow with the model.
    """
    return checked_file_info(weights, *checked_file(weights, sha256))


def checked_file_info(weights: PathLike, path: Path, digest: str) -> CheckpointInfo:
    """``read_checkpoint_info`` for a local file already hashed (``digest``) and checked against its pin."""
    state, stored_config, stored_name = map_state_dict(path)
    config, _, _ = check_state(state, stored_config, path)
    release = os.fspath(weights) if os.fspath(weights) in RELEASES else None
    name = release or (stored_name if isinstance(stored_name, str) and stored_name else Path(path).stem)
    return CheckpointInfo(name, config.num_frames, config.num_classes, config.embed_dim, digest, str(path))
