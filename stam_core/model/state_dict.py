"""Official-format STAM state dicts: read from a checkpoint's bytes, unwrapped, checked against the network.

A checkpoint is ``{"model": state_dict}`` with the official key names (optionally a
"config" and a "name", which ``save_checkpoint`` writes), a ``{"state_dict": ...}`` or a
bare state dict. Every failure is a ``CheckpointError`` that names the file and, for a state
dict that does not fit, every missing or mis-shaped key.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import math
import pickle
from pathlib import Path
from typing import Optional

import torch

from stam_core.errors import CheckpointError
from stam_core.model.network import MODEL_CONFIGS, STAM, STAMConfig, module_to_official, official_to_module

log = logging.getLogger(__name__)

# Wrappers that prefix every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# What torch.load raises for truncated, empty or foreign bytes varies with where it breaks.
LOAD_ERRORS = (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, OSError)


def read_state_dict(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """(state dict with official keys, stored config or None) from the bytes of a checkpoint."""
    try:
        # weights_only: tensors and plain containers only; never run code from a file.
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _torch_reason(e)
        if "GLOBAL" in str(e):
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors "
                                  f"(torch.load weights_only=True): {reason}") from e
        raise CheckpointError(f"{path}: corrupt or not a PyTorch checkpoint: {reason}") from e
    except LOAD_ERRORS as e:
        raise CheckpointError(f"{path}: corrupt, truncated or not a PyTorch checkpoint: "
                              f"{type(e).__name__}: {_torch_reason(e)}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict like the official {{'model': state_dict}}, "
                              f"got {type(obj).__name__}")
    stored_config = None
    if "model" in obj:
        state, stored_config = obj["model"], obj.get("config")
    elif "state_dict" in obj:
        state = obj["state_dict"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state dict
    else:
        raise CheckpointError(f"{path}: no 'model' state dict; top-level keys: {_some(obj)}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'model' is a {type(state).__name__}, not a state dict")
    not_tensors = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if not_tensors:
        raise CheckpointError(f"{path}: state dict entries that are not named tensors: {_some(not_tensors)}")
    return strip_wrappers(state, path), stored_config


def map_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], Optional[dict], Optional[str]]:
    """(state dict with official keys, stored config or None, stored name or None) of the file
    at ``path``, its tensors memory-mapped rather than read: for metadata.

    Anything but a well-formed ``{"model": state_dict}`` is read whole by ``read_state_dict``,
    which names exactly what is wrong.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, *LOAD_ERRORS):
        obj = None
    state = obj.get("model") if isinstance(obj, dict) else None
    if isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return strip_wrappers(state, path), obj.get("config"), obj.get("name")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    state, stored_config = read_state_dict(data, path)
    return state, stored_config, None


def _torch_reason(e: BaseException) -> str:
    """The informative line of a torch.load error (its messages are long and generic)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line[:300]
    return (lines[0] if lines else repr(e))[:300]


def _some(items, limit: int = 10) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def strip_wrappers(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"{path}: key {name!r} appears twice (with and without a wrapper prefix)")
        out[name] = value
    return out


def infer_config(state: dict[str, torch.Tensor], stored: Optional[dict], path: Path) -> STAMConfig:
    """The configuration the weights were trained with, read from their shapes.

    Head counts leave no trace in the shapes: they are the official ones for embed_dim 768,
    else they must come from the checkpoint's "config". Whatever cannot be read falls back to
    STAM-16 defaults, so the key check that follows names everything that is missing.
    """
    def shape(key: str, ndim: int) -> Optional[tuple[int, ...]]:
        value = state.get(key)
        return tuple(value.shape) if value is not None and value.ndim == ndim else None

    found: dict[str, int] = {}
    if s := shape("aggregate.pos_embed", 3):
        found["num_frames"] = s[1] - 1
    if s := shape("head.weight", 2):
        found["num_classes"], found["embed_dim"] = s
    if s := shape("patch_embed.proj.weight", 4):
        found["embed_dim"], found["patch_size"] = s[0], s[3]
    if (s := shape("pos_embed", 3)) and "patch_size" in found:
        grid = math.isqrt(s[1] - 1)
        if grid * grid == s[1] - 1:
            found["img_size"] = grid * found["patch_size"]
    if depth := _count_layers(state, "blocks."):
        found["depth"] = depth
    if layers := _count_layers(state, "aggregate.transformer_enc.layers."):
        found["temporal_layers"] = layers
    if s := shape("aggregate.transformer_enc.layers.0.linear1.weight", 2):
        found["temporal_ff"] = s[0]

    fields = {f.name for f in dataclasses.fields(STAMConfig)}
    stored = {} if stored is None else stored
    if not isinstance(stored, dict) or not set(stored) <= fields:
        raise CheckpointError(f"{path}: 'config' must be a dict with keys among {sorted(fields)}, got {stored!r}")
    for key, value in stored.items():
        if key in found and value != found[key]:
            raise CheckpointError(f"{path}: its config says {key}={value!r} but the weights have {found[key]}")
    embed_dim = found.get("embed_dim", stored.get("embed_dim", 768))
    if embed_dim != 768 and not {"num_heads", "temporal_heads"} <= set(stored):
        raise CheckpointError(f"{path}: embed_dim {embed_dim} is not the official 768, so the head counts "
                              "cannot be inferred and the checkpoint has no 'config' with num_heads and "
                              "temporal_heads (stam_core.model.save_checkpoint writes one)")
    merged = {**dataclasses.asdict(MODEL_CONFIGS["stam_16"]), **stored, **found}
    try:
        return STAMConfig(**merged)
    except ValueError as e:
        raise CheckpointError(f"{path}: inconsistent configuration: {e}") from e


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    """1 + the highest layer index under prefix (so a gap shows up as missing keys), or 0."""
    indices = {int(part) for key in state if key.startswith(prefix)
               for part in [key[len(prefix):].split(".", 1)[0]] if part.isdigit()}
    return max(indices) + 1 if indices else 0


def check_state(state: dict[str, torch.Tensor], stored_config: Optional[dict],
                 path: Path) -> tuple[STAMConfig, dict[str, torch.Tensor], list[str]]:
    """(config, tensors by module name, unexpected official keys); raises CheckpointError."""
    config = infer_config(state, stored_config, path)
    # Built on the meta device: no time spent initialising weights that are replaced next.
    with torch.device("meta"):
        model = STAM(config)
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        name = official_to_module(key)
        if name is None or name not in expected:
            unexpected.append(key)
        else:
            mapped[name] = value
    missing = [module_to_official(name) for name in expected if name not in mapped]
    wrong = [f"{module_to_official(name)} {list(value.shape)}/{value.dtype} "
             f"(expected {list(expected[name].shape)} float)"
             for name, value in mapped.items()
             if value.shape != expected[name].shape or not value.is_floating_point()]
    what = (f"STAM with {config.num_frames} frames, {config.num_classes} classes, embed_dim {config.embed_dim}, "
            f"depth {config.depth}, {config.temporal_layers} temporal layers")
    if not mapped:
        raise CheckpointError(f"{path}: not a STAM checkpoint: none of the {len(expected)} expected keys "
                              f"(official names) is present; it holds: {_some(state)}")
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if wrong:
            parts.append(f"wrong shape or dtype ({len(wrong)}): {', '.join(wrong)}")
        raise CheckpointError(f"{path}: does not fit {what}: " + "; ".join(parts))
    return config, mapped, unexpected


def model_from_state(state: dict[str, torch.Tensor], stored_config: Optional[dict], path: Path) -> STAM:
    config, mapped, unexpected = check_state(state, stored_config, path)
    with torch.device("meta"):
        model = STAM(config)
    if unexpected:
        # Not an error (a checkpoint may carry extras), but never dropped silently.
        log.warning("%s: ignoring %d unexpected checkpoint keys: %s", path, len(unexpected), _some(unexpected, 50))
    model.load_state_dict({k: v.float().contiguous() for k, v in mapped.items()}, strict=True, assign=True)
    model.unexpected_keys = tuple(unexpected)
    left_on_meta = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left_on_meta:  # a tensor the state dict does not cover (e.g. a new timm buffer): a bug here
        raise RuntimeError(f"STAM tensors not initialised by the checkpoint: {left_on_meta}")
    return model.eval()
