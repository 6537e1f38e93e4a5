"""ASGI entry point: HTTP (Django) and websockets (Channels), plus the maintenance loop."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ariacluster.settings")
# Django must be set up before the routing imports models and consumers.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from dispatcher.consumers import DashboardConsumer  # noqa: E402
from dispatcher.maintenance import with_maintenance  # noqa: E402
from workers_app.consumers import AgentConsumer  # noqa: E402

# Agents send no Origin header and authenticate by token; browsers get origin checking.
agent_routes = URLRouter([path("ws/agent/", AgentConsumer.as_asgi())])
browser_routes = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter([path("ws/dashboard/", DashboardConsumer.as_asgi())]))
)


async def websocket_router(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["path"].startswith("/ws/agent/"):
        return await agent_routes(scope, receive, send)
    return await browser_routes(scope, receive, send)


application = with_maintenance(
    ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_router})
)
