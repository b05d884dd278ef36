"""stam_core: the STAM video model, its weights, decoding and sampling.

Knows nothing of Ray, S3 clients or the command line; import it in a notebook to label a clip:

    >>> import stam_core
    >>> model = stam_core.load_model("stam_16")
    >>> clip = stam_core.read_clip("video.mp4", num_frames=model.num_frames)
    >>> logits = model(stam_core.clips_to_tensor(clip.frames[None], model.device))
"""
from stam_core.classes import KINETICS400_CLASSES, read_class_names
from stam_core.errors import (
    DEFAULT_MAX_PIXELS,
    CheckpointError,
    StamError,
    VideoCorruptError,
    VideoDecoderCrash,
    VideoError,
    VideoFormatError,
    VideoNotAVideoError,
    VideoNotFoundError,
    VideoOutOfMemoryError,
    VideoReadError,
    VideoTimeoutError,
    VideoTooLargeError,
)

# The model and weights modules import torch; they load on first use so that decoding (and
# its worker process, which imports stam_core) starts fast and small.
_LAZY = {
    "MODEL_CONFIGS": "model", "STAM": "model", "STAMConfig": "model", "clips_to_tensor": "model",
    "create_model": "model", "load_model": "model", "save_checkpoint": "model",
    "CheckpointInfo": "model", "read_checkpoint_info": "model",
    "RELEASES": "weights", "Release": "weights", "file_sha256": "weights", "resolve_weights": "weights",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"stam_core.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stam_core' has no attribute {name!r}")


from stam_core.video import Clip, ClipInfo, probe_video, read_clip

__all__ = [
    "KINETICS400_CLASSES",
    "read_class_names",
    "CheckpointError",
    "StamError",
    "VideoError",
    "VideoFormatError",
    "VideoNotFoundError",
    "VideoReadError",
    "VideoTimeoutError",
    "VideoDecoderCrash",
    "VideoTooLargeError",
    "VideoOutOfMemoryError",
    "VideoNotAVideoError",
    "VideoCorruptError",
    "DEFAULT_MAX_PIXELS",
    "Clip",
    "ClipInfo",
    "probe_video",
    "read_clip",
    "STAM",
    "STAMConfig",
    "MODEL_CONFIGS",
    "create_model",
    "load_model",
    "save_checkpoint",
    "CheckpointInfo",
    "read_checkpoint_info",
    "clips_to_tensor",
    "RELEASES",
    "Release",
    "resolve_weights",
    "file_sha256",
]
