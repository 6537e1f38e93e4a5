"""aria2's websocket notifications as wake-ups for the agent's main loop.

aria2c pushes ``aria2.onDownloadComplete`` (and start, pause, stop, error, BitTorrent complete)
to every websocket client of its RPC port. A notification carries only the GID and is never
replayed, so the agent treats it as a hint, not as state: each one puts
``{"type": "_aria2_event"}`` on the main loop's queue, which makes the loop poll aria2 at once
instead of at the next poll interval. The periodic poll stays the source of truth; a lost
notification or a dropped socket only costs latency. Each (re)connect also posts an event, so
anything missed while disconnected is picked up by the poll it triggers.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import websocket

from worker_agent.dispatcher_client import backoff_delays

log = logging.getLogger(__name__)

EVENT = "_aria2_event"


class Aria2Events:
    """Background reader of aria2's notifications; ``url()`` is asked at every (re)connect."""

    def __init__(self, url: Callable[[], str], messages: queue.Queue[dict[str, Any]]) -> None:
        self.url = url
        self.messages = messages
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._socket: websocket.WebSocket | None = None
        self._thread = threading.Thread(target=self._run, name="aria2-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._socket
        if sock is not None:
            try:
                sock.close()
            except Exception:
                log.debug("aria2 websocket close failed", exc_info=True)
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = backoff_delays(0.2, 5.0)
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                log.debug("aria2 notifications: %s", exc)
            finally:
                self.connected.clear()
                self._socket = None
            if time.monotonic() - began > 30:
                delay = backoff_delays(0.2, 5.0)
            self._stop.wait(delay())

    def _session(self) -> None:
        sock = websocket.create_connection(self.url(), timeout=5)
        self._socket = sock
        sock.settimeout(None)
        self.connected.set()
        self.messages.put({"type": EVENT, "method": "connected", "gid": ""})
        while not self._stop.is_set():
            raw = sock.recv()
            if not raw:
                raise ConnectionError("aria2 closed the notification socket")
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            method = message.get("method") if isinstance(message, dict) else None
            if isinstance(method, str) and method.startswith("aria2.on"):
                params = message.get("params") or [{}]
                gid = params[0].get("gid", "") if isinstance(params[0], dict) else ""
                self.messages.put({"type": EVENT, "method": method, "gid": str(gid)})


def websocket_url(host: str, port: int, rpc_path: str) -> str:
    """aria2's RPC websocket address for a given host, port and RPC path."""
    return f"ws://{host}:{port}{rpc_path}"
