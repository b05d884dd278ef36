"""STAM (Sharir, Noy, Zelnik-Manor, arXiv 2103.13915): the network, its checkpoints, its precision.

The network is the official Alibaba-MIIL/STAM model, rebuilt from standard parts:

    clips [B, T, 3, 224, 224], floats in [0, 1] (the official eval does ToTensor only: no mean/std)
      -> spatial: timm VisionTransformer ViT-B/16 on each frame; the class token after the
         final LayerNorm                                                         [B*T, 768]
      -> temporal: a class token prepended to the T frame embeddings, T+1 learned positions
         added, 6 post-norm torch.nn.TransformerEncoderLayers (8 heads, feed-forward 2048,
         ReLU) and a final LayerNorm; the output at the class token               [B, 768]
      -> head: Linear(768, num_classes)                                          [B, 400]

Every LayerNorm uses eps=1e-5 as the official code does (timm's ViT default is 1e-6).

Checkpoints use the official key names ({"model": state_dict}); `official_to_module` maps
them explicitly onto this module, and loading fails with every missing or mis-shaped key
named. Low precision is bf16/fp16 autocast inside forward; outputs are always float32.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import logging
import math
import os
import pickle
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from stam_core.errors import CheckpointError
from stam_core.weights import RELEASES, check_sha256, file_sha256, locate, release_pin

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_LN_EPS = 1e-5  # the official model's LayerNorms (torch default); timm's ViT would use 1e-6


@dataclasses.dataclass(frozen=True)
class STAMConfig:
    num_frames: int
    num_classes: int = 400
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    temporal_layers: int = 6
    temporal_heads: int = 8
    temporal_ff: int = 2048

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"STAMConfig.{field.name} must be a positive int, got {value!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        for heads in (self.num_heads, self.temporal_heads):
            if self.embed_dim % heads:
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {heads} heads")


MODEL_CONFIGS: dict[str, STAMConfig] = {
    "stam_8": STAMConfig(num_frames=8),
    "stam_16": STAMConfig(num_frames=16),
    "stam_32": STAMConfig(num_frames=32),
    "stam_64": STAMConfig(num_frames=64),
    # Same structure and input size, ~1000x less compute: for tests and demos.
    "stam_tiny": STAMConfig(num_frames=8, patch_size=32, embed_dim=96, depth=2, num_heads=3,
                            temporal_layers=2, temporal_heads=2, temporal_ff=192),
}


class TemporalAggregate(nn.Module):
    """The official TAggregate: a transformer encoder over [cls; frame embeddings] + positions."""

    def __init__(self, config: STAMConfig):
        super().__init__()
        dim = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_frames + 1, dim))
        # batch_first (the official code is sequence-first) lets eval use PyTorch's fused
        # encoder-layer kernel; the parameters are the same, only the activation layout differs.
        layer = nn.TransformerEncoderLayer(dim, config.temporal_heads, config.temporal_ff, dropout=0.1,
                                           activation="relu", layer_norm_eps=_LN_EPS, batch_first=True,
                                           norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, config.temporal_layers, norm=nn.LayerNorm(dim, eps=_LN_EPS),
                                             enable_nested_tensor=False)  # no padding masks: nothing to nest
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, D] frame embeddings -> [B, D] video embedding."""
        cls = self.cls_token.expand(frames.shape[0], -1, -1)
        x = torch.cat((cls, frames), dim=1) + self.pos_embed
        return self.encoder(x)[:, 0]


class STAM(nn.Module):
    """STAM for inference: `model(clips)` -> float32 logits, `forward_features` -> embeddings.

    Both run under torch.inference_mode (no gradients) and, for precision bf16/fp16, under
    autocast. Attributes: num_frames, num_classes, embed_dim, config, device, precision,
    weights_sha256 / weights_source (None when untrained), unexpected_keys (checkpoint keys
    that were not used).
    """

    def __init__(self, config: STAMConfig):
        super().__init__()
        self.config = config
        self.spatial = VisionTransformer(
            img_size=config.img_size, patch_size=config.patch_size, num_classes=0, global_pool="token",
            embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads, mlp_ratio=4.0,
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=_LN_EPS))
        self.temporal = TemporalAggregate(config)
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        self.precision = "fp32"
        self.weights_sha256: Optional[str] = None
        self.weights_source: Optional[str] = None
        self.unexpected_keys: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def set_precision(self, precision: str) -> str:
        """Resolve and set the precision ("fp32", "bf16", "fp16", "auto"); logs the choice."""
        resolved, reason = _resolve_precision(precision, self.device)
        self.precision = resolved
        log.info("STAM precision %s (requested %s) on %s: %s", resolved, precision, self.device, reason)
        return resolved

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] floats in [0, 1] -> float32 logits [B, num_classes]."""
        clips = self._check(clips)
        with self._inference():
            return self.head(self._encode(clips)).float()

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] floats in [0, 1] -> float32 video embeddings [B, embed_dim]."""
        clips = self._check(clips)
        with self._inference():
            return self._encode(clips).float()

    def predict(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, 3, H, W] floats in [0, 1] -> (float32 class probabilities [B, num_classes],
        float32 video embeddings [B, embed_dim]), on the model's device: one pass for both."""
        clips = self._check(clips)
        with self._inference():
            embeddings = self._encode(clips)
            probs = self.head(embeddings).float().softmax(dim=-1)
            return probs, embeddings.float()

    def _encode(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        frame_tokens = self.spatial(clips.reshape(b * t, *clips.shape[2:]))  # class token after the final norm
        return self.temporal(frame_tokens.reshape(b, t, -1))

    def _inference(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.precision in _AUTOCAST_DTYPES:
            stack.enter_context(torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision]))
        return stack

    def _check(self, clips: Any) -> torch.Tensor:
        size = self.config.img_size
        expected = f"[B, {self.num_frames}, 3, {size}, {size}]"
        if not isinstance(clips, torch.Tensor):
            raise TypeError(f"clips must be a torch.Tensor of shape {expected}, got {type(clips).__name__} "
                            "(stam_core.clips_to_tensor converts decoded uint8 frames)")
        if clips.ndim != 5 or clips.shape[0] == 0 or tuple(clips.shape[1:]) != (self.num_frames, 3, size, size):
            raise ValueError(f"clips must have shape {expected} (a batch of {self.num_frames}-frame RGB clips, "
                             f"channels first), got {list(clips.shape)}")
        if not clips.is_floating_point():
            raise ValueError(f"clips must be floats in [0, 1], got {clips.dtype} "
                             "(stam_core.clips_to_tensor converts uint8 frames)")
        if clips.device != self.device:
            raise ValueError(f"clips are on {clips.device} but the model is on {self.device}")
        return clips.float()  # a no-op for float32; autocast picks the compute dtype


def create_model(name_or_config: Union[str, STAMConfig], **overrides: int) -> STAM:
    """An untrained STAM in eval mode on the CPU, fp32. Names: see MODEL_CONFIGS."""
    if isinstance(name_or_config, STAMConfig):
        config = name_or_config
    elif name_or_config in MODEL_CONFIGS:
        config = MODEL_CONFIGS[name_or_config]
    else:
        raise ValueError(f"unknown STAM model {name_or_config!r}; known: {', '.join(MODEL_CONFIGS)}")
    if overrides:
        config = dataclasses.replace(config, **overrides)
    model = STAM(config).eval()
    if isinstance(name_or_config, str) and not overrides:
        model.name = name_or_config  # save_checkpoint stores it: the provenance of what was trained
    return model


# ---------------------------------------------------------------------------------------
# Checkpoints: official key names <-> this module
# ---------------------------------------------------------------------------------------

# (official prefix, this module's prefix); the first match wins in both directions.
_KEY_MAP = (
    ("aggregate.transformer_enc.", "temporal.encoder."),
    ("aggregate.", "temporal."),
    ("head.", "head."),
    ("cls_token", "spatial.cls_token"),
    ("pos_embed", "spatial.pos_embed"),
    ("patch_embed.", "spatial.patch_embed."),
    ("blocks.", "spatial.blocks."),
    ("norm.", "spatial.norm."),
)
# Wrappers that prefix every key: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def official_to_module(key: str) -> Optional[str]:
    """This module's state-dict name for an official checkpoint key; None if it has none."""
    for official, ours in _KEY_MAP:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def module_to_official(name: str) -> str:
    for official, ours in _KEY_MAP:
        if name.startswith(ours):
            return official + name[len(ours):]
    raise KeyError(f"no official checkpoint key for {name!r}")


def save_checkpoint(model: STAM, path: Union[str, "os.PathLike[str]"]) -> Path:
    """Write `model` as an official-format checkpoint, plus its config: {"model": ..., "config": ...}.

    The config (plain ints) is what lets load_model rebuild non-official sizes, whose head
    counts cannot be read from the weights' shapes. Written atomically (temp file + rename).
    """
    if not isinstance(model, STAM):
        raise TypeError(f"save_checkpoint takes a STAM model, got {type(model).__name__}")
    state = {module_to_official(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"model": state, "config": dataclasses.asdict(model.config),
                        "name": getattr(model, "name", None)}, f)
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; weights are not secrets
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path


def load_model(weights: Union[str, "os.PathLike[str]"], *, device: Union[str, torch.device] = "cpu",
               precision: str = "auto", sha256: Optional[str] = None, compile: bool = False) -> STAM:
    """A trained STAM in eval mode on `device`.

    weights: a release name (stam_core.RELEASES), a local path, or an http(s)/s3 URL
    (downloaded once into the cache). sha256 pins the file. precision: "fp32", "bf16", "fp16"
    or "auto" (bf16 on CUDA with bf16, fp16 on other CUDA, bf16 on a CPU with AVX512-BF16 or
    AMX, else fp32). compile=True wraps the network in torch.compile (meant for CUDA).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:  # checked before any download
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    pin = release_pin(weights, sha256)
    path, _ = locate(weights, pin)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e}") from e
    # Hash the very bytes that are loaded: the recorded sha256 is the provenance of these weights.
    digest = _sha256_bytes(data)
    check_sha256(path, digest, pin)
    state, stored_config = _read_checkpoint(data, path)
    model = _model_from_state(state, stored_config, path)
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


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What the driver needs to know about weights, read without building the model."""

    name: str  # release name, else the name save_checkpoint stored, else the file's stem
    num_frames: int
    num_classes: int
    embed_dim: int
    weights_sha256: str
    path: str


def read_checkpoint_info(weights: Union[str, "os.PathLike[str]"], *, sha256: Optional[str] = None) -> CheckpointInfo:
    """Metadata of a checkpoint, validated like load_model does, with its tensors memory-mapped.

    No model is built: the network is checked on the meta device, and the weights' bytes are
    hashed in chunks, so the driver's memory does not grow with the model.
    """
    pin = release_pin(weights, sha256)
    path, _ = locate(weights, pin)
    digest = file_sha256(path)
    check_sha256(path, digest, pin)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError,
            OSError):
        obj = None  # whatever it is, _read_checkpoint names the reason exactly
    if obj is None or not isinstance(obj, dict) or "model" not in obj:
        state, stored = _read_checkpoint(path.read_bytes(), path)
        stored_name = None
    else:
        state, stored, stored_name = _strip_wrappers(obj["model"], path), obj.get("config"), obj.get("name")
    config, _mapped, _unexpected = _check_state(state, stored, path)
    release = os.fspath(weights) if os.fspath(weights) in RELEASES else None
    name = release or (stored_name if isinstance(stored_name, str) and stored_name else Path(path).stem)
    return CheckpointInfo(name, config.num_frames, config.num_classes, config.embed_dim, digest, str(path))


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_checkpoint(data: bytes, path: Path) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
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
    # What torch.load raises for truncated, empty or foreign bytes varies with where it breaks.
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, OSError) as e:
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
    return _strip_wrappers(state, path), stored_config


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


def _strip_wrappers(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in out:
            raise CheckpointError(f"{path}: key {name!r} appears twice (with and without a wrapper prefix)")
        out[name] = value
    return out


def _infer_config(state: dict[str, torch.Tensor], stored: Optional[dict], path: Path) -> STAMConfig:
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
                              "temporal_heads (stam_core.save_checkpoint writes one)")
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


def _check_state(state: dict[str, torch.Tensor], stored_config: Optional[dict],
                 path: Path) -> tuple[STAMConfig, dict[str, torch.Tensor], list[str]]:
    """(config, tensors by module name, unexpected official keys); raises CheckpointError."""
    config = _infer_config(state, stored_config, path)
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


def _model_from_state(state: dict[str, torch.Tensor], stored_config: Optional[dict], path: Path) -> STAM:
    config, mapped, unexpected = _check_state(state, stored_config, path)
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


# ---------------------------------------------------------------------------------------
# Precision and input
# ---------------------------------------------------------------------------------------

def _resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason) for `requested` on `device`."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        if requested == "auto":
            return ("bf16", "CUDA device with bf16") if bf16 else ("fp16", "CUDA device without native bf16")
        if requested == "bf16" and not bf16:
            raise ValueError(f"precision bf16 requested but {device} has no native bf16; use fp16 or auto")
        return requested, "requested"
    if device.type == "cpu":
        if requested == "auto":
            if fast := cpu_bf16_features():
                return "bf16", f"CPU has {'/'.join(fast)}"
            return "fp32", "CPU has no AVX512-BF16 or AMX, where bf16 is emulated and slower than fp32"
        if requested != "fp32" and not _cpu_features(requested):
            log.warning("precision %s on a CPU without %s is emulated: expect it slower than fp32",
                        requested, "/".join(_FAST_CPU_FEATURES[requested]).upper())
        return requested, "requested"
    if requested == "auto":
        return "fp32", f"no low-precision policy for {device.type}"
    return requested, "requested"


# CPU features that give bf16/fp16 matrix arithmetic its own units; without them oneDNN
# emulates the type (converting to fp32), which is slower than plain fp32.
_FAST_CPU_FEATURES = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU features that make bf16 fast (AVX512-BF16, AMX-BF16) found in /proc/cpuinfo."""
    return _cpu_features("bf16")


def _cpu_features(precision: str) -> tuple[str, ...]:
    flags = _cpu_flags()
    return tuple(f for f in _FAST_CPU_FEATURES[precision] if f in flags)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()  # not Linux: no reliable signal, so no automatic bf16
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def clips_to_tensor(frames: np.ndarray, device: Union[str, torch.device]) -> torch.Tensor:
    """Decoded uint8 frames [B, T, H, W, 3] -> float32 [B, T, 3, H, W] in [0, 1] on `device`.

    The uint8 data crosses to the device (4x fewer bytes than floats; on CUDA from pinned
    memory, asynchronously) and is converted there, exactly as ToTensor does (x / 255).
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a numpy uint8 array [B, T, H, W, 3], got {got}")
    device = torch.device(device)
    data = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        data = data.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        data = data.to(device)
    clips = data.permute(0, 1, 4, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    return clips.div_(255)
