"""stam_core: the STAM video model, its weights, decoding and sampling.

Knows nothing of Ray, S3 clients or the command line; import it in a notebook to label a clip:

    >>> import stam_core
    >>> model = stam_core.load_model("stam_16")
    >>> clip = stam_core.read_clip("video.mp4", num_frames=model.num_frames)
    >>> logits = model(stam_core.clips_to_tensor(clip.frames[None], model.device))
"""
from stam_core.classes import KINETICS400_CLASSES, read_class_names
from stam_core.errors import (
    CheckpointError,
    StamError,
    VideoDecoderCrash,
    VideoError,
    VideoFormatError,
    VideoNotFoundError,
    VideoReadError,
    VideoTimeoutError,
)
from stam_core.model import (
    MODEL_CONFIGS,
    STAM,
    STAMConfig,
    clips_to_tensor,
    create_model,
    load_model,
    save_checkpoint,
)
from stam_core.weights import RELEASES, Release, file_sha256, resolve_weights
# video exports (stam_core/video.py)

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
    "STAM",
    "STAMConfig",
    "MODEL_CONFIGS",
    "create_model",
    "load_model",
    "save_checkpoint",
    "clips_to_tensor",
    "RELEASES",
    "Release",
    "resolve_weights",
    "file_sha256",
]
