"""Typed errors of stam_core. The job turns each into an error row; none is caught bare."""


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


class VideoNotFoundError(VideoError):
    kind = "not_found"


class VideoReadError(VideoError):
    """The bytes could not be read (storage error, permission, truncated object)."""

    kind = "read_error"


class VideoFormatError(VideoError):
    """Not a video, no video stream, unsupported codec or no decodable frame."""

    kind = "format_error"


class VideoTimeoutError(VideoError):
    kind = "timeout"


class VideoDecoderCrash(VideoError):
    """The decoder process died (a native crash); the clip is not retried in-process."""

    kind = "decoder_crash"
