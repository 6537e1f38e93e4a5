"""The dashboard websocket against the real ASGI app: session auth, origin check, notices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from ariacluster.asgi import application
from dispatcher import broadcast, services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

TIMEOUT = 5


@pytest.fixture(autouse=True)
def no_maintenance_loop(settings: Any) -> None:
    settings.MAINTENANCE_ENABLED = False


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def dashboard_socket(
    session: str | None, origin: str = "http://127.0.0.1:8000"
) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


def make_user(name: str, *, staff: bool) -> User:
    return User.objects.create_user(name, password="pw-12345678", is_staff=staff)


def test_anonymous_connections_are_refused() -> None:
    async def scenario() -> None:
        connected, _ = await dashboard_socket(None).connect(timeout=TIMEOUT)
        assert not connected

    run(scenario)


def test_a_foreign_origin_is_refused_even_with_a_valid_session() -> None:
    session = session_cookie(make_user("staff", staff=True))

    async def scenario() -> None:
        socket = dashboard_socket(session, origin="https://evil.example")
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert not connected

    run(scenario)


def test_staff_hear_about_a_new_task_and_a_worker_change() -> None:
    session = session_cookie(make_user("staff", staff=True))

    async def scenario() -> None:
        socket = dashboard_socket(session)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        task = await database_sync_to_async(services.task_create)(url="http://e.x/f.iso")
        assert await socket.receive_json_from(timeout=TIMEOUT) == {
            "type": "tasks",
            "ids": [task.pk],
        }
        await database_sync_to_async(broadcast.broadcast_worker_updated)([7])
        assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "workers", "ids": [7]}
        await socket.disconnect()

    run(scenario)


def test_members_hear_only_about_their_own_tasks() -> None:
    member = make_user("member", staff=False)
    session = session_cookie(member)

    async def scenario() -> None:
        socket = dashboard_socket(session)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        create = database_sync_to_async(services.task_create)
        theirs = await create(url="http://e.x/theirs.iso")
        assert await socket.receive_nothing(timeout=0.5)
        mine = await create(url="http://e.x/mine.iso", owner=member)
        assert await socket.receive_json_from(timeout=TIMEOUT) == {
            "type": "tasks",
            "ids": [mine.pk],
        }
        await database_sync_to_async(broadcast.broadcast_task_updated)([theirs.pk, mine.pk])
        assert await socket.receive_json_from(timeout=TIMEOUT) == {
            "type": "tasks",
            "ids": [mine.pk],
        }
        await socket.disconnect()

    run(scenario)
