"""The only module that talks to the channel layer.

Everything here is best-effort and called after commit (`transaction.on_commit`): the database
is the truth, a lost message is repaired by the agent's next heartbeat (which carries the full
assignment list) or by a dashboard re-reading the page after it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"


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
    if task_ids:
        _send(DASHBOARD_GROUP, {"type": "tasks.updated", "task_ids": task_ids})


def broadcast_worker_updated(worker_ids: list[int]) -> None:
    if worker_ids:
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
