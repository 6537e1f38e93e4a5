"""The agent websocket against the real ASGI app: token auth, `sync` on connect, pushed commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from ariacluster.asgi import application
from dispatcher import services
from dispatcher.models import Task
from dispatcher.placement import task_assign_pending
from workers_app.services import Registration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

TIMEOUT = 5


@pytest.fixture(autouse=True)
def no_maintenance_loop(settings: Any) -> None:
    settings.MAINTENANCE_ENABLED = False


PROTOCOL_KEYS = ("task_id", "epoch", "kind", "uris", "options", "state")


def protocol_view(assignment: dict[str, Any]) -> dict[str, Any]:
    """The Assignment fields docs/protocol.md defines (newer fields may be added beside them)."""
    return {key: assignment[key] for key in PROTOCOL_KEYS}


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def agent_socket(token: str | None) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return WebsocketCommunicator(application, "/ws/agent/", headers=headers)


@pytest.mark.parametrize("token", [None, "acw_deadbeef_nope", "ack_deadbeef_nope", "garbage"])
def test_a_connection_without_a_valid_worker_token_is_closed(
    token: str | None, registration: Registration
) -> None:
    async def scenario() -> None:
        socket = agent_socket(token)
        connected, code = await socket.connect(timeout=TIMEOUT)
        assert not connected
        assert code == 4401

    run(scenario)


def test_a_revoked_token_is_refused_after_registering_again(
    registration: Registration, register_worker: Callable[..., Registration]
) -> None:
    register_worker("worker1")

    async def scenario() -> None:
        connected, code = await agent_socket(registration.token).connect(timeout=TIMEOUT)
        assert (connected, code) == (False, 4401)

    run(scenario)


def test_a_valid_token_receives_sync_then_assign_when_a_task_is_placed(
    registration: Registration,
) -> None:
    held = services.task_create(url="http://e.x/held.iso")
    held.refresh_from_db()
    assert held.worker_id == registration.worker.pk

    async def scenario() -> None:
        socket = agent_socket(registration.token)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        sync = await socket.receive_json_from(timeout=TIMEOUT)
        assert sync["type"] == "sync"
        assert [protocol_view(t) for t in sync["tasks"]] == [
            {
                "task_id": held.pk,
                "epoch": 1,
                "kind": "uri",
                "uris": ["http://e.x/held.iso"],
                "options": {},
                "state": "run",
            }
        ]

        task = await database_sync_to_async(services.task_create)(
            url="http://e.x/new.iso", options={"split": 2}
        )

        assign = await socket.receive_json_from(timeout=TIMEOUT)
        assert assign["type"] == "assign"
        assert protocol_view(assign["task"]) == {
            "task_id": task.pk,
            "epoch": 1,
            "kind": "uri",
            "uris": ["http://e.x/new.iso"],
            "options": {"split": "2"},
            "state": "run",
        }
        await socket.disconnect()

    run(scenario)


def test_cancel_pause_and_resume_are_pushed_to_the_holding_agent(
    registration: Registration,
) -> None:
    task = services.task_create(url="http://e.x/1")
    task.refresh_from_db()

    async def scenario() -> None:
        socket = agent_socket(registration.token)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "sync"

        for action, message in [
            (services.task_pause, "pause"),
            (services.task_resume, "resume"),
            (services.task_cancel, "cancel"),
        ]:
            await database_sync_to_async(action)(task=task)
            pushed = await socket.receive_json_from(timeout=TIMEOUT)
            assert pushed == {"type": message, "task_id": task.pk, "epoch": 1}
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()

    run(scenario)


def test_other_workers_do_not_receive_each_others_commands(
    registration: Registration,
    register_worker: Callable[..., Registration],
) -> None:
    other = register_worker("worker2")
    task = services.task_create(url="http://e.x/1")
    task.refresh_from_db()
    holder, bystander = (
        (registration, other) if task.worker_id == registration.worker.pk else (other, registration)
    )

    async def scenario() -> None:
        watching = agent_socket(bystander.token)
        assert (await watching.connect(timeout=TIMEOUT))[0]
        assert await watching.receive_json_from(timeout=TIMEOUT) == {"type": "sync", "tasks": []}
        await database_sync_to_async(services.task_cancel)(task=task)
        assert await watching.receive_nothing(timeout=0.3)
        await watching.disconnect()

    run(scenario)
    assert holder.worker.pk == Task.objects.get(pk=task.pk).worker_id


def test_a_task_created_while_no_slot_is_free_is_pushed_once_a_slot_frees(
    register_worker: Callable[..., Registration],
) -> None:
    registration = register_worker("solo", max_tasks=1)
    first = services.task_create(url="http://e.x/first")
    second = services.task_create(url="http://e.x/second")

    async def scenario() -> None:
        socket = agent_socket(registration.token)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        sync = await socket.receive_json_from(timeout=TIMEOUT)
        assert [t["task_id"] for t in sync["tasks"]] == [first.pk]

        await database_sync_to_async(services.task_cancel)(task=first)

        assert await socket.receive_json_from(timeout=TIMEOUT) == {
            "type": "cancel",
            "task_id": first.pk,
            "epoch": 1,
        }
        assign = await socket.receive_json_from(timeout=TIMEOUT)
        assert (assign["type"], assign["task"]["task_id"]) == ("assign", second.pk)
        await socket.disconnect()

    run(scenario)
    assert task_assign_pending() == 0
