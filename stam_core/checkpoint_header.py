"""What the driver needs to know about a checkpoint, read without importing torch.

The driver of a run only needs a checkpoint's frame count, class count, embedding width,
name and sha256; importing torch for that costs it hundreds of MB of memory for the whole
run. A ``torch.save`` file (the zip format, torch >= 1.6, which the official STAM releases
and ``save_checkpoint`` use) is a zip holding ``<name>/data.pkl``: a pickle whose tensors
are references to separate storage records. Reading that pickle with an unpickler that knows
only the few globals ``torch.save`` writes for tensors (and builds shapes, not tensors) gives
the metadata without torch and without reading the weights themselves.

``read_checkpoint_header`` returns None for anything it cannot read that way (another
format, unexpected globals) or whose keys are not exactly the official ones, every block
complete and alike: the caller then uses ``stam_core.model.read_checkpoint_info``, which loads
with torch and names exactly what is wrong, before any work starts. Shapes beyond those of
like blocks are checked by ``load_model`` where the model is built.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Union

from stam_core.errors import CheckpointError
from stam_core.weights import RELEASES, checked_file

PathLike = Union[str, "os.PathLike[str]"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # as stam_core.model.state_dict strips them
_OFFICIAL_EMBED_DIM = 768
_INDEX = re.compile(r"\.(\d+)\.")
# The official state dict's keys, a block's index written N (tests/test_checkpoint_header.py
# checks this against the model's own state dict).
_BLOCK = [f"{m}.{p}" for m in ("attn.proj", "attn.qkv", "mlp.fc1", "mlp.fc2", "norm1", "norm2")
          for p in ("bias", "weight")]
_TEMPORAL = [f"{m}.{p}" for m in ("linear1", "linear2", "norm1", "norm2", "self_attn.out_proj")
             for p in ("bias", "weight")] + ["self_attn.in_proj_bias", "self_attn.in_proj_weight"]
OFFICIAL_KEY_PATTERNS = frozenset(
    ["aggregate.cls_token", "aggregate.pos_embed", "aggregate.transformer_enc.norm.bias",
     "aggregate.transformer_enc.norm.weight", "cls_token", "head.bias", "head.weight", "norm.bias",
     "norm.weight", "patch_embed.proj.bias", "patch_embed.proj.weight", "pos_embed"]
    + [f"blocks.N.{k}" for k in _BLOCK] + [f"aggregate.transformer_enc.layers.N.{k}" for k in _TEMPORAL])


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What the driver needs to know about weights, read without building the model."""

    name: str  # release name, else the name save_checkpoint stored, else the file's stem
    num_frames: int
    num_classes: int
    embed_dim: int
    weights_sha256: str
    path: str


@dataclasses.dataclass(frozen=True)
class _Shape:
    """A tensor as the header reader sees it: its shape only (no bytes are read)."""

    shape: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, *args):
    return _Shape(tuple(int(n) for n in size))


def _rebuild_parameter(data, *args):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _HeaderUnpickler(pickle.Unpickler):
    """Only what torch.save writes for a dict of tensors; anything else is refused (never run)."""

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"global {module}.{name} is not read without torch")

    def persistent_load(self, pid):
        return pid  # ('storage', type, key, location, numel): the bytes stay in the zip


def _read_pickle(path: Path) -> object | None:
    """The checkpoint's top-level object with tensors as _Shape, or None when not readable so."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                return None
            with archive.open(pickles[0]) as f:
                return _HeaderUnpickler(f).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError):
        return None  # not a zip checkpoint or not a plain one: the torch path decides


def _header(obj: object, path: Path, weights: PathLike, digest: str) -> CheckpointInfo | None:
    if not isinstance(obj, dict):
        return None
    stored_config, stored_name = obj.get("config"), obj.get("name")
    state = obj.get("model", obj.get("state_dict", obj))
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, _Shape) for k, v in state.items()):
        return None
    shapes = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        shapes[key] = value.shape
    counts = _official_layout(shapes)
    if counts is None:
        return None  # the torch path names the missing or unexpected keys
    stored = stored_config if isinstance(stored_config, dict) else {}
    if any(key in stored and stored[key] != value for key, value in counts.items()):
        return None  # its config disagrees with its blocks: the torch path says how
    head, pos = shapes.get("head.weight"), shapes.get("aggregate.pos_embed")
    if head is None or len(head) != 2 or pos is None or len(pos) != 3:
        return None  # not recognisably STAM: the torch path names what is missing
    found = {"num_classes": head[0], "embed_dim": head[1], "num_frames": pos[1] - 1}
    for key, value in found.items():
        if key in stored and stored[key] != value:
            raise CheckpointError(f"{path}: its config says {key}={stored[key]!r} but the weights have {value}")
    if found["embed_dim"] != _OFFICIAL_EMBED_DIM and not {"num_heads", "temporal_heads"} <= set(stored):
        return None  # the torch path raises the precise error
    release = os.fspath(weights) if os.fspath(weights) in RELEASES else None
    name = release or (stored_name if isinstance(stored_name, str) and stored_name else path.stem)
    return CheckpointInfo(name, found["num_frames"], found["num_classes"], found["embed_dim"], digest, str(path))


def _official_layout(shapes: dict[str, tuple[int, ...]]) -> dict[str, int] | None:
    """The block counts (depth, temporal_layers) when the keys are exactly the official ones,
    every block (and temporal layer) 0..n-1 present and all alike; else None."""
    groups: dict[str, dict[int, dict[str, tuple[int, ...]]]] = {}
    for key, shape in shapes.items():
        match = _INDEX.search(key)
        if match is None:
            continue
        head, tail = key[:match.start()], key[match.end():]
        groups.setdefault(head, {}).setdefault(int(match.group(1)), {})[tail] = shape
    if {_INDEX.sub(".N.", k, count=1) for k in shapes} != OFFICIAL_KEY_PATTERNS:
        return None
    for blocks in groups.values():
        first = blocks[min(blocks)]
        if sorted(blocks) != list(range(len(blocks))) or any(b != first for b in blocks.values()):
            return None
    return {"depth": len(groups["blocks"]), "temporal_layers": len(groups["aggregate.transformer_enc.layers"])}


def _header_of(weights: PathLike, path: Path, digest: str) -> CheckpointInfo | None:
    obj = _read_pickle(path)
    return _header(obj, path, weights, digest) if obj is not None else None


def read_checkpoint_header(weights: PathLike, *, sha256: str | None = None) -> CheckpointInfo | None:
    """The checkpoint's metadata (its sha256 checked against the pin), or None when only torch can
    read it. Downloads a release or URL into the cache like ``load_model``."""
    return _header_of(weights, *checked_file(weights, sha256))


def read_info(weights: PathLike, *, sha256: str | None = None) -> CheckpointInfo:
    """The header without torch when the file allows it, else the torch read; the file is hashed once."""
    path, digest = checked_file(weights, sha256)
    info = _header_of(weights, path, digest)
    if info is not None:
        return info
    from stam_core.model.checkpoint import checked_file_info  # imports torch: only for files read no other way

    return checked_file_info(weights, path, digest)
