"""A real HTTP server on 127.0.0.1 that records webhook POSTs and can be told to misbehave.

``receiver.fail_next(2)`` answers the next two requests with 500; ``receiver.delay = 1.0``
answers late (for timeouts); ``receiver.drip = 0.1`` sends its answer one byte every 0.1 s (each
read gets something in time, but the answer takes seconds); ``receiver.redirect_to = url``
answers 302. ``Receiver(tls=context)`` serves HTTPS. Used as the ``receiver`` fixture (see
``dispatcher/tests/test_webhooks.py``).
"""

from __future__ import annotations

import json
import ssl
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


class _Server(ThreadingHTTPServer):
    # Several senders open many connections at once: the default backlog of 5 resets some.
    request_queue_size = 128
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # On the request's own thread, so a slow handshake holds up no other connection.
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # A sender that gave up mid-answer is what several tests are about.


class Receiver:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.delay = 0.0
        self.drip = 0.0
        self.redirect_to = ""
        self._failures = 0
        self._failure_status = 500
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.tls = tls
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self._server.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

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
        if receiver.drip:
            self._drip(status, reply, receiver.drip)
            return
        try:
            self.send_response(status)
            if status == 302:
                self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass  # The sender gave up (timeout) and closed the connection.

    def _drip(self, status: int, reply: bytes, every: float) -> None:
        answer = (
            f"HTTP/1.1 {status} Whatever\r\nContent-Length: {len(reply)}\r\n\r\n".encode() + reply
        )
        self.close_connection = True
        try:
            for index in range(len(answer)):
                self.wfile.write(answer[index : index + 1])
                self.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # The sender gave up.

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
