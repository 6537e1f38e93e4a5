"""A small threaded HTTP server with real Range support, for aria2c tests on 127.0.0.1.

Serves files under ``root``. Behaviour is controlled per request by the query string, so a test in
another process can use it too, or through the :class:`RangeServer` API:

* ``?throttle=N``  send at most N bytes/s on this response (catch a download mid-way);
* ``?flaky=N``     the first N requests for this URL answer 500 (``&flaky_mode=drop`` closes the
  connection instead), later ones are served;
* ``?norange=1``   ignore ``Range`` and answer 200 with the whole file (no resume possible);
* ``/__status/<code>`` always answers that status; missing files answer 404;
* :meth:`RangeServer.bytes_served` counts bytes written to sockets, which includes what the
  kernel buffered for a client that then hung up; :meth:`RangeServer.ranges` shows what a client
  asked for (better evidence of a resume);
* ``GET /__stats`` returns ``{"bytes": {path: n}, "requests": {path: n}}`` as JSON.

Run standalone: ``python -m tests.support.rangeserver --dir X --port N``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


def make_random_file(path: Path, size: int, seed: int | None = None) -> str:
    """Write ``size`` pseudo-random bytes to ``path`` and return their sha256 hex digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    state = hashlib.sha256(str(seed if seed is not None else os.urandom(8)).encode()).digest()
    with path.open("wb") as handle:
        remaining = size
        while remaining > 0:
            block = (state * (_CHUNK // len(state)))[: min(_CHUNK, remaining)]
            state = hashlib.sha256(state).digest()
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """Return the sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path) -> None:
        super().__init__(address, _Handler)
        self.root = root.resolve()
        self.lock = threading.Lock()
        self.bytes_served: Counter[str] = Counter()
        self.requests_seen: Counter[str] = Counter()
        self.flaky_seen: Counter[str] = Counter()
        self.range_headers: dict[str, list[str | None]] = {}
        self.first_request: dict[str, float] = {}
        self.default_throttle: int | None = None
        self.flaky: dict[str, tuple[int, str]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests read counters instead."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _send_empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        srv = self.server
        with srv.lock:
            srv.requests_seen[path] += 1
            srv.range_headers.setdefault(path, []).append(self.headers.get("Range"))
            srv.first_request.setdefault(path, time.time())
        if path == "/__stats":
            with srv.lock:
                body = json.dumps(
                    {"bytes": dict(srv.bytes_served), "requests": dict(srv.requests_seen)}
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path.startswith("/__status/"):
            self._send_empty(int(path.rsplit("/", 1)[1]))
            return
        if self._fail_if_flaky(path, query):
            return
        target = (srv.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(srv.root) or not target.is_file():
            self._send_empty(404)
            return
        size = target.stat().st_size
        start, end = 0, size - 1
        status = 200
        header = self.headers.get("Range")
        if header and query.get("norange") != "1":
            match = _RANGE.match(header.strip())
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
                else:
                    start = max(0, size - int(last))
                if start > end or start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if query.get("norange") != "1":
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head or length == 0:
            return
        throttle = int(query["throttle"]) if "throttle" in query else srv.default_throttle
        self._copy(target, path, start, length, throttle)

    def _fail_if_flaky(self, path: str, query: dict[str, str]) -> bool:
        srv = self.server
        failures, mode = srv.flaky.get(path, (0, "500"))
        if "flaky" in query:
            failures, mode = int(query["flaky"]), query.get("flaky_mode", "500")
        if failures <= 0:
            return False
        key = self.path if "flaky" in query else path
        with srv.lock:
            srv.flaky_seen[key] += 1
            seen = srv.flaky_seen[key]
        if seen > failures:
            return False
        if mode == "drop":
            self.close_connection = True
            self.connection.close()
        else:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
        return True

    def _copy(self, target: Path, path: str, start: int, length: int, throttle: int | None) -> None:
        chunk = _CHUNK if not throttle else max(1024, min(_CHUNK, throttle // 10))
        began = time.monotonic()
        sent = 0
        with target.open("rb") as handle:
            handle.seek(start)
            while sent < length:
                block = handle.read(min(chunk, length - sent))
                if not block:
                    break
                try:
                    self.wfile.write(block)
                except OSError:
                    self.close_connection = True
                    return
                sent += len(block)
                with self.server.lock:
                    self.server.bytes_served[path] += len(block)
                if throttle:
                    ahead = sent / throttle - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


class RangeServer:
    """Context manager running the server in a background thread on 127.0.0.1."""

    def __init__(self, root: Path, port: int = 0, throttle: int | None = None) -> None:
        self._server = _Server(("127.0.0.1", port), root)
        self._server.default_throttle = throttle
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root(self) -> Path:
        return self._server.root

    def url(self, path: str) -> str:
        """The http://127.0.0.1:port URL of ``path`` (with or without a leading slash)."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def set_throttle(self, bytes_per_second: int | None) -> None:
        """Throttle every later response without a ``throttle`` query (None: full speed)."""
        self._server.default_throttle = bytes_per_second

    def set_flaky(self, path: str, failures: int, mode: str = "500") -> None:
        """Make the next ``failures`` requests for ``path`` fail (``mode`` "500" or "drop")."""
        with self._server.lock:
            self._server.flaky["/" + path.lstrip("/")] = (failures, mode)
            self._server.flaky_seen["/" + path.lstrip("/")] = 0

    def bytes_served(self, path: str) -> int:
        """Body bytes sent so far for ``path``."""
        with self._server.lock:
            return self._server.bytes_served["/" + path.lstrip("/")]

    def requests(self, path: str) -> int:
        """Requests received so far for ``path``."""
        with self._server.lock:
            return self._server.requests_seen["/" + path.lstrip("/")]

    def first_request_at(self, path: str) -> float | None:
        """Wall-clock time (time.time()) of the first request for ``path``, if any."""
        with self._server.lock:
            return self._server.first_request.get("/" + path.lstrip("/"))

    def ranges(self, path: str) -> list[str | None]:
        """The ``Range`` header of every request for ``path`` so far (None when absent)."""
        with self._server.lock:
            return list(self._server.range_headers.get("/" + path.lstrip("/"), []))

    def start(self) -> RangeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Command-line entry point; prints the chosen port on stdout and serves until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle", type=int, default=None, help="bytes/s per response")
    args = parser.parse_args()
    server = RangeServer(args.dir, args.port, args.throttle)
    print(server.port, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
