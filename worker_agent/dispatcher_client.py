"""The agent's two channels to the dispatcher (protocol v1, see docs/protocol.md).

* :class:`DispatcherClient` — HTTP JSON reports on a ``requests.Session`` with timeouts; network
  errors and 5xx are retried with backoff (all agent reports are idempotent per epoch), then raise
  :class:`DispatcherUnavailable`. 409 raises :class:`StaleLease`, 401 :class:`Unauthorized`,
  other 4xx :class:`DispatcherRejected`.
* :class:`CommandStream` — the websocket ``/ws/agent/`` in its own thread; every JSON message is
  put on a queue; a closed socket is re-opened with backoff 0.5 s doubling to 30 s, with jitter.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import websocket

log = logging.getLogger(__name__)

API_PREFIX = "/api/agent/v1"


class DispatcherError(RuntimeError):
    """Base class of dispatcher failures."""


class DispatcherUnavailable(DispatcherError):
    """No usable answer (network error, timeout, 5xx) after the retries."""


class DispatcherRejected(DispatcherError):
    """A 4xx answer other than 401/409; ``status`` and ``body`` hold the details."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"dispatcher answered {status}: {body}")
        self.status = status
        self.body = body


class Unauthorized(DispatcherRejected):
    """401: bad join key or revoked worker token (re-register)."""


class StaleLease(DispatcherRejected):
    """409: the task is not leased to this worker at this epoch; drop it and its files."""


def backoff_delays(first: float = 0.5, cap: float = 30.0) -> Callable[[], float]:
    """Return a function giving successive delays: doubling from ``first`` to ``cap``, jittered."""
    current = first / 2

    def next_delay() -> float:
        nonlocal current
        current = min(current * 2, cap)
        return current * random.uniform(0.75, 1.25)

    return next_delay


class DispatcherClient:
    """HTTP side of the protocol. Not thread-safe: used from the agent's main loop only."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, retries: int = 2, retry_delay: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.token: str | None = None
        self.http = requests.Session()

    def _post(
        self, path: str, body: dict[str, Any], *, headers: dict[str, str], retries: int | None
    ) -> dict[str, Any]:
        url = f"{self.base_url}{API_PREFIX}{path}"
        attempts = (self.retries if retries is None else retries) + 1
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.retry_delay * 2 ** (attempt - 1))
            try:
                response = self.http.post(url, json=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                last = exc
                continue
            if response.status_code >= 500:
                last = DispatcherError(f"{path}: HTTP {response.status_code}")
                continue
            try:
                payload = response.json() if response.content else {}
            except ValueError:
                payload = {"error": response.text[:200]}
            if response.status_code == 409:
                raise StaleLease(409, payload)
            if response.status_code == 401:
                raise Unauthorized(401, payload)
            if response.status_code >= 400:
                raise DispatcherRejected(response.status_code, payload)
            if not isinstance(payload, dict):
                raise DispatcherRejected(response.status_code, payload)
            return payload
        raise DispatcherUnavailable(f"POST {path}: {last}")

    def _auth(self) -> dict[str, str]:
        if not self.token:
            raise Unauthorized(401, {"error": "not registered"})
        return {"Authorization": f"Bearer {self.token}"}

    def register(self, join_key: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /register with the join key; stores the returned worker token."""
        answer = self._post("/register", body, headers={"X-Join-Key": join_key}, retries=0)
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise DispatcherRejected(200, {"error": "register answer has no token"})
        self.token = token
        return answer

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /heartbeat (single attempt: the next interval is the retry)."""
        return self._post("/heartbeat", body, headers=self._auth(), retries=0)

    def progress(self, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /progress (single attempt: the next batch supersedes it)."""
        return self._post("/progress", {"tasks": tasks}, headers=self._auth(), retries=0)

    def task_report(self, task_id: int, event: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /tasks/<id>/<event> where event is started, completed, failed or released."""
        return self._post(f"/tasks/{task_id}/{event}", body, headers=self._auth(), retries=None)

    def websocket_url(self) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, "/ws/agent/", "", ""))


class SocketReader:
    """A daemon thread that keeps one websocket session open until :meth:`stop`.

    Subclasses implement :meth:`_session` (open the socket, store it in ``_socket``, set
    ``connected``, read until it fails); any failure reconnects after a jittered backoff from
    ``first`` doubling to ``cap``, reset once a session lasted ``steady`` seconds.
    """

    def __init__(self, name: str, *, first: float, cap: float, steady: float) -> None:
        self.name = name
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._socket: websocket.WebSocket | None = None
        self._backoff = (first, cap)
        self._steady = steady
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._socket
        if sock is not None:
            try:
                sock.close()
            except Exception:
                log.debug("%s: close failed", self.name, exc_info=True)
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _session(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        delay = backoff_delays(*self._backoff)
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._session()
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                log.debug("%s: %s", self.name, exc)
            finally:
                self.connected.clear()
                self._socket = None
            if time.monotonic() - began > self._steady:
                delay = backoff_delays(*self._backoff)
            self._stop.wait(delay())


class CommandStream(SocketReader):
    """Background websocket reader that delivers decoded messages to ``messages``.

    ``token`` is called at every (re)connect so a re-registration's new token is used. Each
    successful connect also puts ``{"type": "_connected"}`` on the queue so the owner can resync.
    """

    def __init__(
        self,
        url: str,
        token: Callable[[], str | None],
        messages: queue.Queue[dict[str, Any]],
        *,
        ping_interval: float = 20.0,
    ) -> None:
        super().__init__("dispatcher-ws", first=0.5, cap=30.0, steady=60.0)
        self.url = url
        self.token = token
        self.messages = messages
        self.ping_interval = ping_interval

    def _session(self) -> None:
        token = self.token()
        if token:  # not registered yet: try again after the backoff
            self._read(token)

    def _read(self, token: str) -> None:
        sock = websocket.create_connection(
            self.url, header=[f"Authorization: Bearer {token}"], timeout=10
        )
        self._socket = sock
        sock.settimeout(1.0)
        self.connected.set()
        log.info("websocket connected to %s", self.url)
        self.messages.put({"type": "_connected"})
        last_ping = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_ping > self.ping_interval:
                sock.ping()
                last_ping = time.monotonic()
            try:
                raw = sock.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if raw in ("", b""):
                raise websocket.WebSocketConnectionClosedException("closed by the dispatcher")
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("websocket: ignoring a message that is not JSON")
                continue
            if isinstance(message, dict):
                self.messages.put(message)
