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
from collections.abc import Callable
from typing import Any

import websocket

from worker_agent.dispatcher_client import SocketReader

log = logging.getLogger(__name__)

EVENT = "_aria2_event"


class Aria2Events(SocketReader):
    """Background reader of aria2's notifications; ``url()`` is asked at every (re)connect."""

    def __init__(self, url: Callable[[], str], messages: queue.Queue[dict[str, Any]]) -> None:
        super().__init__("aria2-events", first=0.2, cap=5.0, steady=30.0)
        self.url = url
        self.messages = messages

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
