"""Where STAM weights come from: the release registry, the download cache, sha256 provenance.

`resolve_weights` turns a release name, a local path, an http(s) URL or an s3:// URL into a
local file. Downloads land in the cache directory (``$STAM_CACHE``, else
``$XDG_CACHE_HOME/stam``, else ``~/.cache/stam``) once, written with
``stam_core.storage.atomic_output``: published only when complete (and matching the sha256
pin, when one is given), so an interrupted download never leaves a file that looks finished.

Reading the checkpoint itself (torch.load, key mapping) is in ``stam_core.model``. Must not
import torch: ``stam_core`` re-exports this module's names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Union
from urllib.parse import urlparse

from stam_core.errors import CheckpointError
from stam_core.storage import S3_SCHEME, atomic_output, is_s3_uri, s3_filesystem

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 60
URL_SCHEMES = ("http://", "https://", "s3://")  # weights downloaded into the cache


@dataclasses.dataclass(frozen=True)
class Release:
    """One official weights file. sha256 is None where no digest has been published."""

    url: str
    num_frames: int
    sha256: str | None = None


_BASE = "https://miil-public-eu.oss-eu-central-1.aliyuncs.com/model-zoo/STAM/v2"
RELEASES: dict[str, Release] = {
    f"stam_{t}": Release(url=f"{_BASE}/stam_{t}.pth", num_frames=t) for t in (8, 16, 32, 64)
}

PathLike = Union[str, "os.PathLike[str]"]


def cache_dir() -> Path:
    """The download cache: $STAM_CACHE, else $XDG_CACHE_HOME/stam, else ~/.cache/stam."""
    if os.environ.get("STAM_CACHE"):
        return Path(os.environ["STAM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "stam"


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(weights: PathLike, *, sha256: str | None = None) -> Path:
    """A local file for `weights` (release name, path, http(s):// or s3:// URL).

    URLs and release names are downloaded into the cache once; later calls use the cached
    file without touching the network. `sha256` pins the file's digest (a release's own pin
    is used when none is given); a mismatch raises CheckpointError, and a download that does
    not match is not kept.
    """
    pin = release_pin(weights, sha256)
    path, verified = locate(weights, pin)
    if pin is not None and not verified:
        check_sha256(path, file_sha256(path), pin)
    return path


def release_pin(weights: PathLike, sha256: str | None) -> str | None:
    """The normalised sha256 pin: the caller's, else the release's own, else None."""
    if sha256 is not None:
        return _normalise_pin(sha256)
    release = RELEASES.get(os.fspath(weights))
    return _normalise_pin(release.sha256) if release is not None else None


def check_sha256(path: Path, actual: str, pin: str | None) -> None:
    if pin is not None and actual != pin:
        raise CheckpointError(f"{path}: sha256 mismatch: expected {pin}, file has {actual}"
                              + (" (a cached download: delete it to fetch again)" if path.parent == cache_dir() else ""))


def locate(weights: PathLike, pin: str | None) -> tuple[Path, bool]:
    """The local file for `weights`, downloading if needed; True when the pin was checked on the way.

    Only fresh downloads are checked here (so a bad one is never kept); local and cached files
    are left to the caller, which hashes the bytes it actually loads.
    """
    text = os.fspath(weights)
    if text in RELEASES:
        return _cached_download(RELEASES[text].url, pin)
    if text.startswith(URL_SCHEMES):
        return _cached_download(text, pin)
    path = Path(text).expanduser()
    if not path.is_file():
        known = ", ".join(RELEASES)
        raise CheckpointError(f"{path}: no such file (nor a release name: {known}; nor an http(s)/s3 URL)")
    return path, False


def checked_file(weights: PathLike, sha256: str | None = None) -> tuple[Path, str]:
    """The local file for ``weights`` (downloaded into the cache if needed) and its sha256,
    checked against the pin (``sha256``, else a release's own): what a reader that does not
    load the bytes itself hashes, in 1 MiB chunks."""
    pin = release_pin(weights, sha256)
    path, _ = locate(weights, pin)
    digest = file_sha256(path)
    check_sha256(path, digest, pin)
    return path, digest


def portable_weights(weights: PathLike) -> str:
    """``weights`` as another process sees it (a Ray worker has its own working folder): a local
    path made absolute, ``~`` expanded; a release name or URL as it is."""
    text = os.fspath(weights)
    if text in RELEASES or text.startswith(URL_SCHEMES):
        return text
    return str(Path(text).expanduser().absolute())


def _normalise_pin(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    pin = sha256.strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise ValueError(f"sha256 pin must be 64 hex digits, got {sha256!r}")
    return pin


_URL = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/\s@?#]*@)?([^\s?#]*)(?:[?#]\S*)?")


def redact_url(text: str) -> str:
    """Every URL in ``text`` without its query string and userinfo (presigned signatures,
    session tokens, passwords): what may be logged or recorded."""
    return _URL.sub(r"\1\2", str(text))


def _cache_path(url: str) -> Path:
    # The URL's hash keeps two URLs with the same file name apart; the name keeps it readable.
    name = Path(urlparse(url).path).name or "weights.pth"
    return cache_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def _cached_download(url: str, pin: str | None) -> tuple[Path, bool]:
    target = _cache_path(url)
    if target.is_file():
        # A cached file that no longer matches its pin is reported by the caller, not replaced.
        log.info("weights %s: using cached %s", redact_url(url), target)
        return target, False
    log.info("weights %s: downloading to %s", redact_url(url), target)
    with atomic_output(target) as out:  # 0644: a shared cache must be readable by its other users
        digest = _download(url, out)
        if pin is not None and digest != pin:  # raised inside: a bad download is never published
            raise CheckpointError(f"{redact_url(url)}: sha256 mismatch: expected {pin}, downloaded file has {digest}")
    log.info("weights %s: cached as %s (sha256 %s)", redact_url(url), target, digest)
    return target, pin is not None


def _download(url: str, out: BinaryIO) -> str:
    """Stream `url` into `out`; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    written = 0
    if is_s3_uri(url):
        bucket_key = url[len(S3_SCHEME):]
        try:
            with s3_filesystem().open_input_stream(bucket_key) as src:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as e:  # pyarrow's errors (missing key, access denied, network) are OSErrors
            raise CheckpointError(f"{redact_url(url)}: download failed: {redact_url(str(e))}") from e
        return digest.hexdigest()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                written += len(chunk)
    # HTTPError is a URLError; timeouts are OSErrors; a connection cut mid-body is IncompleteRead.
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise CheckpointError(f"{redact_url(url)}: download failed: {redact_url(str(e))}") from e
    if expected is not None and written != int(expected):
        raise CheckpointError(f"{redact_url(url)}: download truncated: got {written} of {expected} bytes")
    return digest.hexdigest()
