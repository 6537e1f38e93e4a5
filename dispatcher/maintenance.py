"""Periodic work: expire silent workers' leases, remove long-offline workers, place due tasks.

Runs as an asyncio task inside every ASGI process (started by the first request or websocket),
so there is no separate scheduler to deploy. Each step is a conditional, transactional update,
which is why two or more dispatcher processes can run it at the same time safely. The tick runs
on the placement runner's thread, so it never holds up request handling and never overlaps a
placement pass of the same process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from dispatcher import broadcast
from dispatcher.idempotency import idempotency_purge_expired
from dispatcher.leases import lease_expire_stale, worker_remove_offline
from dispatcher.placement import runner, task_assign_pending
from dispatcher.throughput import speed_sample_record
from dispatcher.webhooks import webhook_deliver_due_soon

logger = logging.getLogger(__name__)


def maintenance_tick() -> dict[str, int]:
    """One pass of every periodic duty; returns what each did (for logs and tests).

    Each duty runs even when an earlier one fails (a failure is logged and counted as 0), so a
    broken step cannot stop, say, webhook deliveries or placement.
    """

    def duty(name: str, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception:
            logger.exception("maintenance: %s failed", name)
            return None

    expired = duty("lease expiry", lease_expire_stale) or []
    removed = duty("offline worker removal", worker_remove_offline) or 0
    placed = duty("placement", task_assign_pending) or 0
    duty("speed sample", speed_sample_record)
    duty("idempotency purge", idempotency_purge_expired)
    # Only starts a batch on the webhook thread: a slow receiver never delays placement.
    duty("webhook delivery", webhook_deliver_due_soon)
    return {"expired_workers": len(expired), "removed_workers": removed, "placed": placed}


async def maintenance_loop(interval: float) -> None:
    """Run `maintenance_tick` every `interval` seconds until cancelled; never dies on errors."""
    tick = runner.run_in_background(maintenance_tick)
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("maintenance pass failed")
        await asyncio.sleep(interval)


def with_maintenance(app: Any) -> Any:
    """Wrap an ASGI app so the first connection starts maintenance and placement in its loop."""
    state: dict[str, list[asyncio.Task[None]] | None] = {"tasks": None}

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if settings.MAINTENANCE_ENABLED and state["tasks"] is None and scope["type"] != "lifespan":
            loop = asyncio.get_running_loop()
            broadcast.attach_loop(loop)
            state["tasks"] = [
                loop.create_task(runner.serve()),
                loop.create_task(maintenance_loop(settings.MAINTENANCE_INTERVAL)),
            ]
        return await app(scope, receive, send)

    return wrapped
