"""Typed errors of stam_core. The job turns each into an error row; none is caught bare.

``VideoError.kind`` is the error row's ``error_kind``. Which kinds are worth another try on
a later run (a different machine, more memory, storage back up) and which are properties of
the file itself is listed in docs/decoding.md ("Bad input").
"""

# The largest picture read_clip/probe_video accept by default: 8K UHD (8192x4320 is DCI 8K,
# the largest common production size). Larger streams are rejected from the header, before
# any frame is decoded; the decode worker's memory limit is derived from this number.
DEFAULT_MAX_PIXELS = 8192 * 4320


class StamError(Exception):
    """Base class of every error stam_core raises on purpose."""


class CheckpointError(StamError):
    """A weights file that is missing, corrupt, truncated or not a STAM checkpoint."""


class VideoError(StamError):
    """A video that cannot be decoded. The message names the source and the reason."""

    kind = "video_error"

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):
        # Pickled with both arguments: Ray sends a worker's exception to the driver pickled, and
        # the default (the one formatted message) cannot call this __init__, so the driver saw
        # "UnserializableException: Failed to deserialize exception" instead of the reason.
        return type(self), (self.source, self.reason)


class VideoNotFoundError(VideoError):
    kind = "not_found"


class VideoReadError(VideoError):
    """The bytes could not be read (storage error, permission, truncated object)."""

    kind = "read_error"


class VideoFormatError(VideoError):
    """Not a video, no video stream, unsupported codec or no decodable frame."""

    kind = "format_error"


class VideoTooLargeError(VideoFormatError):
    """The stream's coded picture (width x height from the header) exceeds ``max_pixels``.

    Raised before any frame is decoded. A subclass of VideoFormatError: the file is not
    something this reader accepts, whatever the machine.
    """

    kind = "too_large"


class VideoNotAVideoError(VideoFormatError):
    """A still image (JPEG, PNG, GIF, ...) in a video's clothing: a single-image codec with one frame."""

    kind = "not_a_video"


class VideoCorruptError(VideoFormatError):
    """Too many packets the decoder rejects: what decodes is not a faithful sample of the video
    (the rule is in docs/decoding.md). Lighter damage is reported in ``Clip.warnings``."""

    kind = "corrupt"


class VideoOutOfMemoryError(VideoError):
    """Decoding needed more memory than the decode worker may use (or the process was killed
    for memory). A property of the machine and the limit, not only of the file: retryable."""

    kind = "out_of_memory"


class VideoTimeoutError(VideoError):
    kind = "timeout"


class VideoDecoderCrash(VideoError):
    """The decoder process died (a native crash); the clip is not retried in-process."""

    kind = "decoder_crash"
