"""Decoding videos and sampling the frames STAM sees: ``read_clip`` and ``probe_video``.

The sampling rule, the transform and the worker process are described in
``stam_core.video.api``, with the layout of this package (base types at the bottom in
``clip``, the readers above them, the API on top). Nothing here imports torch: the decode
worker process imports this package and should start fast.
"""
from stam_core.video.api import DECODERS, RESIZES, probe_video, read_clip
from stam_core.video.clip import Clip, ClipInfo, Source, source_name
from stam_core.video.decode_worker import decode_memory_limit
from stam_core.video.frames import CROP, SHORT_SIDE, to_model_input

__all__ = [
    "CROP",
    "DECODERS",
    "RESIZES",
    "SHORT_SIDE",
    "Clip",
    "ClipInfo",
    "Source",
    "decode_memory_limit",
    "probe_video",
    "read_clip",
    "source_name",
    "to_model_input",
]
