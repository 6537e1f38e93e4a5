"""A tiny HTTP BitTorrent tracker and a seeding aria2c, both on 127.0.0.1, for offline magnets.

:class:`Tracker` answers ``/announce`` with every other peer that announced the same info hash
(compact form, all at 127.0.0.1); ``delay`` holds the first answers so a test can watch the
"fetching metadata" phase. :class:`Seeder` runs a second aria2c that seeds a torrent forever
(DHT, LPD and peer exchange off), optionally throttled so a download can be caught mid-way.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from dispatcher.bencode import encode
from worker_agent.aria2_rpc import Aria2Rpc, Aria2Unavailable
from worker_agent.supervisor import find_aria2c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _TrackerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _TrackerHandler)
        self.lock = threading.Lock()
        self.peers: dict[bytes, dict[bytes, int]] = {}
        self.delay = delay
        self.announces = 0


class _TrackerHandler(BaseHTTPRequestHandler):
    server: _TrackerServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        params: dict[str, bytes] = {}
        for pair in query.split("&"):
            if "=" in pair:
                key, value = pair.split("=", 1)
                params[key] = unquote_to_bytes(value)
        info_hash = params.get("info_hash", b"")
        peer_id = params.get("peer_id", b"")
        port = int(params.get("port", b"0") or 0)
        srv = self.server
        with srv.lock:
            srv.announces += 1
            swarm = srv.peers.setdefault(info_hash, {})
            if params.get("event") == b"stopped":
                swarm.pop(peer_id, None)
            elif port:
                swarm[peer_id] = port
            others = [p for pid, p in swarm.items() if pid != peer_id]
            delay = srv.delay
        if delay and "seeder" not in self.headers.get("User-Agent", ""):
            time.sleep(delay)
        compact = b"".join(socket.inet_aton("127.0.0.1") + struct.pack(">H", p) for p in others)
        body = encode({"interval": 2, "min interval": 1, "peers": compact})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            # The client gave up waiting (a delayed answer); it announces again.
            self.close_connection = True


class Tracker:
    def __init__(self, delay: float = 0.0) -> None:
        self._server = _TrackerServer(delay)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/announce"

    def set_delay(self, seconds: float) -> None:
        self._server.delay = seconds

    def __enter__(self) -> Tracker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Seeder:
    """A second aria2c seeding ``torrent`` whose data is already in ``data_dir``."""

    def __init__(self, torrent: bytes, data_dir: Path, state_dir: Path, upload_limit: str) -> None:
        self.torrent = torrent
        self.data_dir = data_dir
        self.state_dir = state_dir
        self.upload_limit = upload_limit
        self.secret = secrets.token_hex(16)
        self.rpc_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Seeder:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        conf = self.state_dir / "seeder.conf"
        conf.write_text(f"rpc-secret={self.secret}\n")
        os.chmod(conf, 0o600)
        port = free_port()
        self.process = subprocess.Popen(
            [
                str(find_aria2c(None)),
                f"--conf-path={conf}",
                "--enable-rpc=true",
                "--rpc-listen-all=false",
                f"--rpc-listen-port={self.rpc_port}",
                f"--dir={self.data_dir}",
                f"--listen-port={port}",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                f"--max-overall-upload-limit={self.upload_limit}",
                "--user-agent=seeder",
                "--peer-agent=seeder",
                "--no-netrc=true",
                "--console-log-level=warn",
                f"--stop-with-process={os.getpid()}",
            ],
            stdout=(self.state_dir / "seeder.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        rpc = Aria2Rpc("127.0.0.1", self.rpc_port, self.secret, retries=0)
        deadline = time.monotonic() + 10
        while True:
            try:
                rpc.get_version()
                break
            except Aria2Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        rpc.add_torrent(base64.b64encode(self.torrent).decode(), [], {})
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
