"""A real HTTP server on 127.0.0.1 that records webhook POSTs and can be told to misbehave.

``receiver.fail_next(2)`` answers the next two requests with 500; ``receiver.delay = 1.0``
answers late (for timeouts); ``receiver.redirect_to = url`` answers 302. Used as the
``receiver`` fixture (see ``dispatcher/tests/test_webhooks.py``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delay = 0.0
        self.redirect_to = ""
        self._failures = 0
        self._failure_status = 500
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures, self._failure_status = count, status

    def answer(self, request: Received) -> int:
        """Record the request; return the status to answer with."""
        with self._lock:
            self.requests.append(request)
            if self._failures > 0:
                self._failures -= 1
                return self._failure_status
        return 302 if self.redirect_to else 204

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = receiver.answer(Received(self.path, dict(self.headers.items()), body))
        if receiver.delay:
            time.sleep(receiver.delay)
        reply = b'{"error": "receiver told to fail"}' if status >= 500 else b""
        try:
            self.send_response(status)
            if status == 302:
                self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass  # The sender gave up (timeout) and closed the connection.

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()
