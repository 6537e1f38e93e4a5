"""The agent's websocket: the dispatcher pushes assignments and commands down it at once."""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dispatcher.broadcast import worker_group
from dispatcher.selectors import worker_assignments
from worker_agent.logcontext import log_context
from workers_app import services
from workers_app.models import Worker

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


@database_sync_to_async
def _authenticate(token: str) -> Worker | None:
    return services.worker_for_token(token) if token else None


@database_sync_to_async
def _assignments(worker: Worker) -> list[dict[str, Any]]:
    return worker_assignments(worker)


class AgentConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One connection per agent; sends `sync` on connect, then `assign`/`cancel`/... pushes."""

    worker: Worker | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Handle each message (connect, pushes, disconnect) in this worker's log context."""
        with log_context(worker=self.worker.name if self.worker else None):
            await super().dispatch(message)

    async def connect(self) -> None:
        auth = _header(self.scope, b"authorization")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        self.worker = await _authenticate(token)
        if self.worker is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.group = worker_group(self.worker.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        with log_context(worker=self.worker.name):
            logger.info("agent websocket connected")
            await self.send_json({"type": "sync", "tasks": await _assignments(self.worker)})

    async def disconnect(self, code: int) -> None:
        if self.worker is not None:
            logger.info("agent websocket closed (code %s)", code)
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Reports go over HTTP so each gets a status code; nothing is expected here.
        return

    async def agent_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])
