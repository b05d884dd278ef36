"""stam_core: the STAM video model, its weights, decoding and sampling.

Knows nothing of Ray, S3 clients or the command line; import it in a notebook to label a clip:

    >>> import stam_core
    >>> from stam_core.model import clips_to_tensor, load_model
    >>> model = load_model("stam_16")
    >>> clip = stam_core.read_clip("video.mp4", num_frames=model.num_frames)
    >>> logits = model(clips_to_tensor(clip.frames[None], model.device))

This package re-exports what does not need torch: the errors, the class names, the weights
registry (``stam_core.weights``) and decoding (``stam_core.video``). The model, which imports
torch, is ``stam_core.model``: decode worker processes import stam_core and must start fast
and small. Where bytes live (S3, atomic local writes): ``stam_core.storage``.
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
from stam_core.video import Clip, ClipInfo, probe_video, read_clip
from stam_core.weights import RELEASES, Release, file_sha256, resolve_weights

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
    "RELEASES",
    "Release",
    "resolve_weights",
    "file_sha256",
]
