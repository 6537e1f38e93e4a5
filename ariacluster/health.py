"""Unauthenticated probes for load balancers, container health checks and supervisors.

- `GET /healthz`: liveness: this process answers and reaches its database.
- `GET /readyz`: readiness: the database and the channel layer (Redis when configured) both
  answer; 503 otherwise. Neither says more than ok / not ok: counts need a key (`/api/status`).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from dispatcher.broadcast import channel_layer_reachable


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any database failure means "not healthy"
        return False
    return True


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    if not database_reachable():
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok"})


@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    database = await sync_to_async(database_reachable)()
    channels = await channel_layer_reachable(timeout=2.0)
    if database and channels:
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "unavailable"}, status=503)
