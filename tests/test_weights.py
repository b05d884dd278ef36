"""Weights fetching: release registry, download cache, atomic writes, sha256 pins.

Downloads come from an http.server on 127.0.0.1 (and the local S3 server): no internet.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

import stam_core.model
from stam_core import CheckpointError
from stam_core import weights as weights_mod


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /truncated/NAME promises the whole file but sends only part of it."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/truncated/"):
            body = (Path(self.directory) / self.path.split("/")[-1]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture()
def server(tmp_path, tiny_weights):
    """An HTTP server on 127.0.0.1 serving a folder that holds the tiny checkpoint."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "stam_tiny.pth").write_bytes(tiny_weights.read_bytes())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.root = root
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("STAM_CACHE", str(path))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_release_registry():
    assert set(stam_core.RELEASES) == {"stam_8", "stam_16", "stam_32", "stam_64"}
    for name, release in stam_core.RELEASES.items():
        assert release.num_frames == int(name.split("_")[1])
        assert release.url == ("https://miil-public-eu.oss-eu-central-1.aliyuncs.com/model-zoo/STAM/v2/"
                               f"{name}.pth")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("STAM_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_mod.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("STAM_CACHE")
    assert weights_mod.cache_dir() == tmp_path / "xdg" / "stam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_mod.cache_dir() == tmp_path / "home" / ".cache" / "stam"


def test_file_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    assert stam_core.file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_release_downloads_once_into_cache(server, cache, monkeypatch, tiny_weights):
    url = f"{server.url}/stam_tiny.pth"
    monkeypatch.setitem(stam_core.RELEASES, "stam_16", stam_core.Release(url=url, num_frames=8))
    path = stam_core.resolve_weights("stam_16")
    assert path.parent == cache and path.name.endswith("stam_tiny.pth")
    assert path.read_bytes() == tiny_weights.read_bytes()
    assert files_in(cache) == [path.name]  # no temporary file left behind
    assert server.requests == ["/stam_tiny.pth"]
    # The second call, and load_model, use the cache: no request at all, even with the server gone.
    server.shutdown()
    assert stam_core.resolve_weights("stam_16") == path
    model = stam_core.model.load_model("stam_16", precision="fp32")
    assert server.requests == ["/stam_tiny.pth"]
    assert model.weights_source == "stam_16"
    assert model.weights_sha256 == stam_core.file_sha256(tiny_weights)
    assert model.num_frames == 8


def test_any_http_url_works(server, cache, tiny_weights):
    model = stam_core.model.load_model(f"{server.url}/stam_tiny.pth", sha256=stam_core.file_sha256(tiny_weights))
    assert model.weights_source == f"{server.url}/stam_tiny.pth"
    assert len(files_in(cache)) == 1


def test_pin_mismatch_on_download_keeps_nothing(server, cache, monkeypatch):
    url = f"{server.url}/stam_tiny.pth"
    monkeypatch.setitem(stam_core.RELEASES, "stam_16", stam_core.Release(url=url, num_frames=8, sha256="ab" * 32))
    with pytest.raises(CheckpointError, match="sha256 mismatch") as info:
        stam_core.resolve_weights("stam_16")  # the release's own pin applies
    assert url in str(info.value)
    assert files_in(cache) == []
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        stam_core.model.load_model(url, sha256="cd" * 32)
    assert files_in(cache) == []


def test_pin_match_on_download(server, cache, tiny_weights):
    digest = stam_core.file_sha256(tiny_weights)
    path = stam_core.resolve_weights(f"{server.url}/stam_tiny.pth", sha256=digest)
    assert stam_core.file_sha256(path) == digest


def test_cached_file_that_no_longer_matches_its_pin(server, cache, tiny_weights):
    url = f"{server.url}/stam_tiny.pth"
    path = stam_core.resolve_weights(url)
    path.write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="sha256 mismatch.*delete it"):
        stam_core.resolve_weights(url, sha256=stam_core.file_sha256(tiny_weights))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        stam_core.model.load_model(url, sha256=stam_core.file_sha256(tiny_weights))
    assert len(server.requests) == 1  # reported, never silently downloaded again


@pytest.mark.parametrize("path", ["/truncated/stam_tiny.pth", "/missing.pth"])
def test_failed_download_leaves_no_file(server, cache, path):
    url = server.url + path
    with pytest.raises(CheckpointError, match="download") as info:
        stam_core.resolve_weights(url)
    assert url in str(info.value)
    assert files_in(cache) == []


def test_unreachable_server(cache):
    with pytest.raises(CheckpointError, match="download failed"):
        stam_core.resolve_weights("http://127.0.0.1:9/stam_16.pth")  # port 9 (discard): refused
    assert files_in(cache) == []


def test_local_path_and_pin(tiny_weights):
    assert stam_core.resolve_weights(tiny_weights) == tiny_weights
    assert stam_core.resolve_weights(str(tiny_weights), sha256=stam_core.file_sha256(tiny_weights)) == tiny_weights
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        stam_core.resolve_weights(tiny_weights, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="no such file"):
        stam_core.resolve_weights(tiny_weights.with_name("absent.pth"))
    with pytest.raises(ValueError, match="64 hex digits"):
        stam_core.resolve_weights(tiny_weights, sha256="abc")


def test_s3_url(local_s3, cache, tiny_weights):
    local_s3.create_bucket("weights")
    local_s3.upload(tiny_weights, "s3://weights/models/stam_tiny.pth")
    model = stam_core.model.load_model("s3://weights/models/stam_tiny.pth", precision="fp32")
    assert model.weights_sha256 == stam_core.file_sha256(tiny_weights)
    assert len(files_in(cache)) == 1
    with pytest.raises(CheckpointError, match="s3://weights/models/absent.pth"):
        stam_core.resolve_weights("s3://weights/models/absent.pth")
    assert len(files_in(cache)) == 1
