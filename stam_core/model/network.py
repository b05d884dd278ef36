"""The STAM network (Sharir, Noy, Zelnik-Manor, arXiv 2103.13915) and its official key names.

The network is the official Alibaba-MIIL/STAM model, rebuilt from standard parts:

    clips [B, T, 3, 224, 224], floats in [0, 1] (the official eval does ToTensor only: no mean/std)
      -> spatial: timm VisionTransformer ViT-B/16 on each frame; the class token after the
         final LayerNorm                                                         [B*T, 768]
      -> temporal: a class token prepended to the T frame embeddings, T+1 learned positions
         added, 6 post-norm torch.nn.TransformerEncoderLayers (8 heads, feed-forward 2048,
         ReLU) and a final LayerNorm; the output at the class token               [B, 768]
      -> head: Linear(768, num_classes)                                          [B, 400]

Every LayerNorm uses eps=1e-5 as the official code does (timm's ViT default is 1e-6).

Checkpoints use the official key names; ``official_to_module`` and ``module_to_official``
map them explicitly onto this module (reading and writing checkpoints:
``stam_core.model.checkpoint``). Low precision is bf16/fp16 autocast inside forward
(``stam_core.model.precision``); outputs are always float32.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from functools import partial
from typing import Any, Optional, Union

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from stam_core.model.precision import (
    AUTOCAST_DTYPES,
    clips_to_tensor,
    resolve_precision,
)

log = logging.getLogger(__name__)

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
    name (the MODEL_CONFIGS name create_model built it from, else None), weights_sha256 /
    weights_source (None when untrained), unexpected_keys (checkpoint keys that were not used).
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
        self.name: Optional[str] = None  # save_checkpoint stores it: the provenance of what was trained
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
        resolved, reason = resolve_precision(precision, self.device)
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

    def predict(self, clips: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (float32 class probabilities [B, num_classes], float32 video embeddings
        [B, embed_dim]), on the model's device: one pass for both.

        clips: [B, T, 3, H, W] floats in [0, 1] on the model's device, or the decoder's uint8
        frames [B, T, H, W, 3] as a numpy array (converted here with ``clips_to_tensor``).
        """
        if isinstance(clips, np.ndarray):
            clips = clips_to_tensor(clips, self.device)
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
        if self.precision in AUTOCAST_DTYPES:
            stack.enter_context(torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision]))
        return stack

    def _check(self, clips: Any) -> torch.Tensor:
        size = self.config.img_size
        expected = f"[B, {self.num_frames}, 3, {size}, {size}]"
        if not isinstance(clips, torch.Tensor):
            raise TypeError(f"clips must be a torch.Tensor of shape {expected}, got {type(clips).__name__} "
                            "(stam_core.model.clips_to_tensor converts decoded uint8 frames)")
        if clips.ndim != 5 or clips.shape[0] == 0 or tuple(clips.shape[1:]) != (self.num_frames, 3, size, size):
            raise ValueError(f"clips must have shape {expected} (a batch of {self.num_frames}-frame RGB clips, "
                             f"channels first), got {list(clips.shape)}")
        if not clips.is_floating_point():
            raise ValueError(f"clips must be floats in [0, 1], got {clips.dtype} "
                             "(stam_core.model.clips_to_tensor converts uint8 frames)")
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
        model.name = name_or_config
    return model


# ---- official checkpoint key names <-> this module ---------------------------------------

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


def official_to_module(key: str) -> Optional[str]:
    """This module's state-dict name for an official checkpoint key; None if it has none."""
    for official, ours in _KEY_MAP:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def module_to_official(name: str) -> str:
    """The official checkpoint key for this module's state-dict name."""
    for official, ours in _KEY_MAP:
        if name.startswith(ours):
            return official + name[len(ours):]
    raise KeyError(f"no official checkpoint key for {name!r}")
