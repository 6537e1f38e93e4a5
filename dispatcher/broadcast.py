"""The only module that talks to the channel layer.

Everything here is best-effort and called after commit (`transaction.on_commit`): the database
is the truth, a lost message is repaired by the agent's next heartbeat (which carries the full
assignment list) or by a dashboard re-reading the page after it reconnects.

Dashboard notices are coalesced inside a server process: ids collect for `FLUSH_DELAY` and go
out as one group message, sent from the event loop itself. Under load this turns hundreds of
thread-to-loop hand-offs and channel-layer sends per second into a few. Pages refresh at most
every 500 ms anyway, so the delay is not visible. Agent pushes (assignments, commands) are sent
at once: their latency is the dispatch latency.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"
FLUSH_DELAY = 0.1


class _DashboardBatch:
    """Task and worker ids waiting to be announced to dashboards, flushed from the loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[int] = set()
        self.workers: set[int] = set()
        self.scheduled = False
        self.sending: set[asyncio.Task[None]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            self.loop = loop

    def add(self, tasks: list[int], workers: list[int]) -> bool:
        """Queue ids for the next flush; False when no server loop runs (send directly)."""
        with self.lock:
            loop = self.loop
            if loop is None or loop.is_closed():
                return False
            self.tasks.update(tasks)
            self.workers.update(workers)
            if self.scheduled:
                return True
            self.scheduled = True
            try:
                loop.call_soon_threadsafe(loop.call_later, FLUSH_DELAY, self._flush)
            except RuntimeError:  # the loop closed since the check: send directly instead
                self.tasks, self.workers, self.scheduled, self.loop = set(), set(), False, None
                return False
        return True

    def _flush(self) -> None:
        with self.lock:
            tasks, workers = sorted(self.tasks), sorted(self.workers)
            self.tasks, self.workers, self.scheduled = set(), set(), False
        messages = []
        if tasks:
            messages.append({"type": "tasks.updated", "task_ids": tasks})
        if workers:
            messages.append({"type": "workers.updated", "worker_ids": workers})
        sending = asyncio.get_running_loop().create_task(_send_all(messages))
        # The loop keeps only a weak reference to tasks: hold it until it is done.
        self.sending.add(sending)
        sending.add_done_callback(self.sending.discard)


_dashboard = _DashboardBatch()


def attach_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Coalesce dashboard notices through this (the server's) event loop from now on."""
    _dashboard.attach(loop)


async def _send_all(messages: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for message in messages:
        try:
            await layer.group_send(DASHBOARD_GROUP, message)
        except Exception:
            logger.warning("channel layer send to %s failed", DASHBOARD_GROUP, exc_info=True)


def worker_group(worker_id: int) -> str:
    return f"worker-{worker_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("channel layer send to %s failed", group, exc_info=True)


def send_to_agent(worker_id: int, payload: dict[str, Any]) -> None:
    """Push one protocol message (docs/protocol.md) to a worker's websocket, if connected."""
    _send(worker_group(worker_id), {"type": "agent.message", "payload": payload})


def broadcast_task_updated(task_ids: list[int]) -> None:
    """Tell dashboards these tasks changed; they re-render the rows from the database."""
    if task_ids and not _dashboard.add(task_ids, []):
        _send(DASHBOARD_GROUP, {"type": "tasks.updated", "task_ids": task_ids})


def broadcast_worker_updated(worker_ids: list[int]) -> None:
    if worker_ids and not _dashboard.add([], worker_ids):
        _send(DASHBOARD_GROUP, {"type": "workers.updated", "worker_ids": worker_ids})


async def channel_layer_reachable(timeout: float = 2.0) -> bool:
    """True when a message sent through the channel layer comes back within `timeout`.

    Used by `/readyz`: with Redis this proves the server accepts and returns messages; the
    in-memory layer always answers.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    # A plain (not process-local) name: receive() then reads it back directly.
    channel = f"readyz.{secrets.token_hex(8)}"
    try:
        await asyncio.wait_for(layer.send(channel, {"type": "readyz.ping"}), timeout)
        await asyncio.wait_for(layer.receive(channel), timeout)
    except Exception:  # any failure means "not ready"
        logger.warning("channel layer check failed", exc_info=True)
        return False
    return True
