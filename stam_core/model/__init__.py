"""The STAM model (imports torch): the network, its checkpoints and its precision.

    >>> from stam_core.model import clips_to_tensor, load_model
    >>> model = load_model("stam_16")
    >>> logits = model(clips_to_tensor(clip.frames[None], model.device))

Layout: ``network`` (STAMConfig, STAM, create_model, the official key names), ``precision``
(which precision a device runs in; clips_to_tensor), ``state_dict`` (reading and checking
official-format state dicts) and ``checkpoint`` (load_model, save_checkpoint,
read_checkpoint_info) on top.
"""
from stam_core.model.checkpoint import (
    CheckpointInfo,
    load_model,
    read_checkpoint_info,
    save_checkpoint,
)
from stam_core.model.network import (
    MODEL_CONFIGS,
    STAM,
    STAMConfig,
    TemporalAggregate,
    create_model,
    module_to_official,
    official_to_module,
)
from stam_core.model.precision import PRECISIONS, clips_to_tensor, cpu_bf16_features

__all__ = [
    "MODEL_CONFIGS",
    "PRECISIONS",
    "STAM",
    "STAMConfig",
    "TemporalAggregate",
    "CheckpointInfo",
    "clips_to_tensor",
    "cpu_bf16_features",
    "create_model",
    "load_model",
    "module_to_official",
    "official_to_module",
    "read_checkpoint_info",
    "save_checkpoint",
]
