"""A fault-injecting HTTP proxy for S3 tests: sits on 127.0.0.1 in front of a (moto) S3 server.

Point a client's ``AWS_ENDPOINT_URL`` at ``proxy.endpoint``; each request is forwarded to the
target unless the proxy decides, at random (a seeded RNG) or by a rule, to fail it:

    slowdown       503 SlowDown with an S3 XML error body; the request never reaches the server
    internal       500 InternalError (S3 XML body); never reaches the server
    reset_before   the connection is reset (RST) without an answer; never reaches the server
    reset_after    forwarded (the server acted on it), then half of the answer and a reset
    drop_response  forwarded (the server acted on it), then a reset without any answer
    delay          ``delay_s`` seconds of silence, then forwarded

``reset_after`` and ``drop_response`` are the nasty ones: the request took effect, and the
client cannot know. Every request is recorded (``records``) with what was done to it.

Threaded (one thread per client connection, HTTP/1.1 keep-alive); each forwarded request
uses a fresh connection to the target. Bodies are read whole (Content-Length or chunked),
which is fine for the small objects of tests.
"""
from __future__ import annotations

import http.client
import os
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

ACTIONS = ("forward", "slowdown", "internal", "reset_before", "reset_after", "drop_response", "delay")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "expect", "content-length"}

ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
              '<Resource>{resource}</Resource><RequestId>FAULT{n:08d}</RequestId></Error>')
ERRORS = {"slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
          "internal": (500, "Internal Server Error", "InternalError",
                       "We encountered an internal error. Please try again.")}


@dataclass
class Rule:
    """Do ``action`` to the next ``times`` requests whose method and path (with query) match."""

    method: str | None
    path_pattern: str
    action: str
    times: int = 1
    hits: list[str] = field(default_factory=list)  # the paths it fired on

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and re.search(self.path_pattern, path) is not None


@dataclass
class Record:
    at: float
    method: str
    path: str
    action: str
    status: int | None  # what the target answered (None when it was never asked or did not answer)
    error: str = ""


class FaultProxy:
    def __init__(self, target: str, *, seed: int = 0, slowdown: float = 0.0, internal: float = 0.0,
                 reset: float = 0.0, delay: float = 0.0, delay_s: float = 3.0, scope: str = r"."):
        """Rates are per request; ``reset`` is split evenly between reset_before and reset_after.
        Only requests whose path matches ``scope`` (a regex) get random faults."""
        parsed = urlparse(target)
        self.target_host, self.target_port = parsed.hostname, parsed.port or 80
        self.rng = random.Random(seed)
        self.rates = [("slowdown", slowdown), ("internal", internal), ("reset_before", reset / 2),
                      ("reset_after", reset / 2), ("delay", delay)]
        self.delay_s = delay_s
        self.scope = re.compile(scope)
        self.random_faults = True
        self.rules: list[Rule] = []
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ---- control -------------------------------------------------------------------------
    def add_rule(self, method: str | None, path_pattern: str, action: str, times: int = 1) -> Rule:
        assert action in ACTIONS, action
        rule = Rule(method, path_pattern, action, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            pass

        Handler.proxy = proxy
        self._server = _Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what happened -------------------------------------------------------------------
    def counts(self) -> Counter:
        with self._lock:
            return Counter(r.action for r in self.records)

    def faulted(self, pattern: str = r".") -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.action != "forward" and re.search(pattern, r.path)]

    def describe(self, limit: int = 60) -> str:
        """The faults injected so far, one line each (for assertion messages and reports)."""
        lines = [f"{r.at:.2f} {r.action:13s} {r.method} {r.path} -> {r.status} {r.error}".rstrip()
                 for r in self.faulted()]
        head = f"{len(self.records)} requests, {dict(self.counts())}"
        return "\n".join([head, *lines[-limit:]])

    # ---- internals -----------------------------------------------------------------------
    def _decide(self, method: str, path: str) -> str:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.matches(method, path):
                    rule.times -= 1
                    rule.hits.append(path)
                    return rule.action
            if not self.random_faults or not self.scope.search(path):
                return "forward"
            x = self.rng.random()
        for action, rate in self.rates:
            if x < rate:
                return action
            x -= rate
        return "forward"

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # a client that hung up: nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        proxy = self.proxy
        body = self._read_body()
        method, path = self.command, self.path
        action = proxy._decide(method, path)
        record = Record(time.time(), method, path, action, None)
        proxy._record(record)
        if action in ERRORS:
            status, reason, code, message = ERRORS[action]
            resource = path.split("?", 1)[0]
            payload = ERROR_BODY.format(code=code, message=message, resource=resource,
                                        n=len(proxy.records)).encode()
            self._send(status, reason, [("Content-Type", "application/xml"), ("x-amz-request-id", "FAULT")],
                       payload, head=method == "HEAD")
            return
        if action == "reset_before":
            self._reset()
            return
        if action == "delay":
            time.sleep(proxy.delay_s)
        try:
            status, reason, headers, payload = self._forward(method, path, body)
        except OSError as exc:
            record.error = f"target: {exc}"
            self._reset()
            return
        record.status = status
        if action == "drop_response":
            self._reset()
            return
        if action == "reset_after":
            if method == "HEAD" or not payload:
                self._reset()  # nothing to cut in half: no answer at all
                return
            self._send(status, reason, headers, payload, cut=max(1, len(payload) // 2))
            self._reset()
            return
        self._send(status, reason, headers, payload, head=method == "HEAD")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, method: str, path: str, body: bytes):
        proxy = self.proxy
        conn = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=120)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            payload = resp.read()
            headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in HOP_BY_HOP or (method == "HEAD" and k.lower() == "content-length")]
            return resp.status, resp.reason, headers, payload
        finally:
            conn.close()

    def _send(self, status: int, reason: str, headers, payload: bytes, *, head: bool = False,
              cut: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not head:
            lines.append(f"Content-Length: {len(payload)}")
        elif not any(k.lower() == "content-length" for k, _ in headers):
            lines.append(f"Content-Length: {len(payload)}")
        close = self.headers.get("Connection", "").lower() == "close"
        lines.append("Connection: close" if close else "Connection: keep-alive")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head:
            data += payload if cut is None else payload[:cut]
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return
        if close:
            self.close_connection = True

    def _reset(self) -> None:
        """Close the client's connection with a TCP reset (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            os.close(self.connection.detach())  # the real close, whatever still refers to the socket
        except OSError:
            pass
