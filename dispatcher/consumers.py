"""The dashboard's websocket: tells logged-in users which tasks and workers changed."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dispatcher.broadcast import DASHBOARD_GROUP
from dispatcher.models import Task


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Session-authenticated; forwards change notices, the page re-reads the rows it shows.

    Staff hear about every task; other users only about tasks they own (one indexed query per
    notice), matching what the pages show them. Anonymous connections are refused.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4403)
            return
        self.is_staff = bool(user.is_staff)
        self.user_id = user.pk
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def tasks_updated(self, event: dict[str, Any]) -> None:
        ids = list(event["task_ids"])
        if not self.is_staff:
            ids = await self._owned(ids)
            if not ids:
                return
        await self.send_json({"type": "tasks", "ids": ids})

    async def workers_updated(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "workers", "ids": event["worker_ids"]})

    @database_sync_to_async
    def _owned(self, ids: list[int]) -> list[int]:
        return list(
            Task.objects.filter(pk__in=ids, owner_id=self.user_id).values_list("pk", flat=True)
        )
