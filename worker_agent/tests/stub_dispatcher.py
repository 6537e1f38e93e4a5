"""A tiny stand-in for the dispatcher's agent API (stdlib only), recording every report.

It speaks the HTTP half of docs/protocol.md: register answers a token, heartbeat answers the
current ``assignments``, progress answers no stale tasks, task reports answer 200 unless
``responses`` holds an override for that path. There is no websocket: the agent's websocket
thread keeps retrying, and the heartbeat answer carries the authoritative list.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubDispatcher:
    def __init__(self, heartbeat_interval: float = 0.5, heartbeat_timeout: float = 30) -> None:
        self.assignments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.responses: dict[str, tuple[int, Any]] = {}
        self.lock = threading.Lock()
        self.register_answer = {
            "worker_id": 1,
            "token": "acw_test",
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout,
            "progress_interval": 1.0,
        }
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                path = self.path.removeprefix("/api/agent/v1")
                with stub.lock:
                    stub.requests.append((path, dict(self.headers), body))
                    status, answer = stub.answer(path, self.headers)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, headers: Any) -> tuple[int, Any]:
        if path in self.responses:
            return self.responses[path]
        if path == "/register":
            if headers.get("X-Join-Key") != "join-secret":
                return 401, {"error": "bad join key", "detail": {}}
            return 200, self.register_answer
        if headers.get("Authorization") != "Bearer acw_test":
            return 401, {"error": "bad token", "detail": {}}
        if path == "/heartbeat":
            return 200, {"tasks": list(self.assignments)}
        if path == "/progress":
            return 200, {"stale": []}
        return 200, {"status": "ok"}

    def reports(self, suffix: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(p, b) for p, _, b in self.requests if p.endswith(suffix)]

    def wait_for(self, suffix: str, timeout: float = 20.0) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.reports(suffix)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {suffix} report within {timeout} s: {self.requests}")

    def __enter__(self) -> StubDispatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
