"""The dashboard's websocket: tells logged-in staff which tasks and workers changed."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dispatcher.broadcast import DASHBOARD_GROUP


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Session-authenticated; forwards change notices, the page re-reads the rows it shows."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)

    async def tasks_updated(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "tasks", "ids": event["task_ids"]})

    async def workers_updated(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "workers", "ids": event["worker_ids"]})
