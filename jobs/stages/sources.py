"""What the decode stages hand ``stam_core`` for a ``video_uri``: ``open_video``.

A local key becomes its path. An S3 key is read exactly as listed: pyarrow's S3 filesystem
(what ``stam_core`` uses for ``s3://`` URIs, inside the decode worker, under its time limit)
reads most keys exactly, but asks S3 for another key when one has an empty, ``.`` or ``..``
path component (``a//b.mp4``, ``a/./b.mp4``; ``stam_core.storage.pyarrow_reads_key_exactly``).
Those keys are read here with boto3, the client that listed and stat'ed them, as a seekable
file object of ranged GETs; the decode worker reads it through this process, only the byte
ranges the decoder needs. ``stam_core`` stays free of boto3.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from jobs.listing.rows import short
from jobs.listing.s3 import NOT_FOUND, error_code
from jobs.storage import local_path, split_s3
from jobs.storage import s3_client as client
from stam_core.storage import source_kind

READ_BUFFER = 1 << 20  # bytes per ranged GET: the decoder reads ~64 KB at a time
BODY_ATTEMPTS = 3  # a GET whose body breaks off is asked again (botocore retries the request, not the body)


@contextlib.contextmanager
def open_video(video_uri: str) -> Iterator[object]:
    """The source ``stam_core.read_clip``/``probe_video`` take for ``video_uri``.

    A ``VideoError`` raised inside the block names ``video_uri`` (a file object would be
    named ``<file object ...>``); a missing or unreadable object raises one on entry.
    """
    from stam_core import VideoError

    if source_kind(local_path(video_uri)) != "s3_exact_key":  # stam_core opens it itself
        yield local_path(video_uri)
        return
    reader = io.BufferedReader(S3ObjectReader(video_uri), READ_BUFFER)
    try:
        yield reader
    except VideoError as exc:
        if exc.source == video_uri:
            raise
        raise type(exc)(video_uri, exc.reason) from exc
    finally:
        reader.close()


class S3ObjectReader(io.RawIOBase):
    """A seekable binary file over one S3 object, by its exact key: ranged GetObject calls.

    Every GET is pinned to the ETag seen on opening, so an object replaced mid-read fails the
    read instead of mixing two versions. Failures are ``OSError`` (what a decoder's reads
    raise); opening raises ``VideoNotFoundError``/``VideoReadError`` naming the URI.
    """

    def __init__(self, uri: str):
        from botocore.exceptions import BotoCoreError, ClientError

        from stam_core import VideoNotFoundError, VideoReadError

        super().__init__()
        self.name = uri
        self.bucket, self.key = split_s3(uri)
        self.s3 = client()
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                raise VideoNotFoundError(uri, "no such object") from None
            raise VideoReadError(uri, f"cannot open ({short(exc)})") from exc
        except BotoCoreError as exc:
            raise VideoReadError(uri, f"cannot open ({short(exc)})") from exc
        self.size = int(head["ContentLength"])
        self.etag = head.get("ETag")
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self.name}: seek to a negative offset")
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        data = self._get(self.pos, n)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def _get(self, offset: int, size: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"IfMatch": self.etag} if self.etag else {}
        span = f"bytes {offset}-{offset + size - 1}"
        attempt = 1
        while True:
            try:
                answer = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"{span.replace(' ', '=')}",
                                            **extra)
            except ClientError as exc:
                changed = error_code(exc) in ("412", "PreconditionFailed")
                why = "the object changed while it was read" if changed else short(exc)
                raise OSError(f"{self.name}: cannot read {span} ({why})") from exc
            except BotoCoreError as exc:  # botocore already retried the request
                raise OSError(f"{self.name}: cannot read {span} ({short(exc)})") from exc
            try:
                with contextlib.closing(answer["Body"]) as body:
                    return body.read()
            except (BotoCoreError, OSError) as exc:  # the body broke off: ask again
                if attempt == BODY_ATTEMPTS:
                    raise OSError(f"{self.name}: cannot read {span} ({short(exc)})") from exc
                attempt += 1
