"""Dispatcher log lines name the task and the worker they are about, and only that request's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from rest_framework.test import APIClient

from ariacluster.asgi import application
from dispatcher import services
from dispatcher.models import Task, TaskStatus
from dispatcher.placement import task_assign_pending
from worker_agent.logcontext import LogContextFilter, current_log_context
from workers_app.services import Registration

AGENT = "/api/agent/v1"
SHA = "b" * 64


def captured(caplog: pytest.LogCaptureFixture) -> list[Any]:
    """The test's INFO+ records, stamped when emitted, as every configured handler does.

    Called in the test body: pytest gives each test phase its own capture handler.
    """
    caplog.set_level("INFO")
    caplog.handler.addFilter(LogContextFilter())
    return caplog.records


def ids(record: Any) -> tuple[Any, Any]:
    return getattr(record, "task_id", None), getattr(record, "worker", None)


def lines(records: list[Any], text: str) -> list[Any]:
    found = [r for r in records if text in r.getMessage()]
    assert found, f"no log line contains {text!r}: {[r.getMessage() for r in records]}"
    return found


def leased_task(url: str = "http://example.com/file.iso") -> Task:
    task = services.task_create(url=url)
    task_assign_pending()
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    return task


def test_every_handler_of_the_dispatcher_stamps_the_log_context() -> None:
    handlers = settings.LOGGING["handlers"].values()

    assert handlers and all(h["filters"][0] == "context" for h in handlers)
    assert settings.LOGGING["filters"]["context"]["()"].endswith("LogContextFilter")


@pytest.mark.django_db
def test_an_agent_report_is_logged_with_its_task_and_worker(
    caplog: pytest.LogCaptureFixture,
    registration: Registration,
    agent_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    records = captured(caplog)
    # Placement announces assignments after commit.
    with django_capture_on_commit_callbacks(execute=True):
        task = leased_task()

    for what, body in [
        ("started", {"epoch": task.epoch, "gid": "0000000000010001"}),
        ("completed", {"epoch": task.epoch, "files": [{"path": "a", "size": 1, "sha256": SHA}]}),
    ]:
        response = agent_client.post(f"{AGENT}/tasks/{task.pk}/{what}", body, format="json")
        assert response.status_code == 200

    for text in ("created", "assigned to worker1", "started on worker1", "completed on worker1"):
        assert [ids(r) for r in lines(records, f"task {task.pk} {text}")] == [
            (task.pk, "worker1") if text != "created" else (task.pk, None)
        ]
    # Nothing the request set survives it (the test client runs it in this very thread).
    assert current_log_context() == {}


@pytest.mark.django_db
def test_a_refused_report_is_logged_with_the_task_and_the_worker_that_sent_it(
    caplog: pytest.LogCaptureFixture, registration: Registration, register_worker: Any
) -> None:
    records = captured(caplog)
    task = leased_task()
    intruder = APIClient()
    intruder.credentials(HTTP_AUTHORIZATION=f"Bearer {register_worker('worker2').token}")

    response = intruder.post(
        f"{AGENT}/tasks/{task.pk}/started", {"epoch": task.epoch}, format="json"
    )

    assert response.status_code == 409
    (refused,) = lines(records, "report refused")
    assert ids(refused) == (task.pk, "worker2")


@pytest.mark.django_db
def test_refused_progress_names_each_stale_task_and_the_reporting_worker(
    caplog: pytest.LogCaptureFixture, registration: Registration, agent_client: APIClient
) -> None:
    records = captured(caplog)
    task = leased_task()
    items = [{"task_id": task.pk, "epoch": task.epoch + 5}, {"task_id": 999999, "epoch": 1}]

    response = agent_client.post(f"{AGENT}/progress", {"tasks": items}, format="json")

    assert response.json() == {"stale": [task.pk, 999999]}
    refused = lines(records, "refused: lease gone")
    assert [ids(r) for r in refused] == [(task.pk, "worker1"), (999999, "worker1")]


@pytest.mark.django_db
def test_task_api_actions_are_logged_with_the_task_and_its_worker(
    caplog: pytest.LogCaptureFixture, registration: Registration, api_client: APIClient
) -> None:
    records = captured(caplog)
    task = leased_task()

    response = api_client.post(f"/api/v1/tasks/{task.pk}/pause/")

    assert response.status_code == 200
    (paused,) = lines(records, f"task {task.pk}: pause requested")
    assert ids(paused) == (task.pk, "worker1")
    assert current_log_context() == {}


async def asgi_post(path: str, body: dict[str, Any], token: str = "") -> int:
    """POST through the real ASGI application, inside the caller's own asyncio task."""
    data = json.dumps(body).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    incoming = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await application(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.django_db(transaction=True)
def test_under_asgi_each_request_logs_only_its_own_ids_and_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture, settings: Any, registration: Registration, join_key: str
) -> None:
    records = captured(caplog)
    settings.MAINTENANCE_ENABLED = False
    task = leased_task()
    report = {"epoch": task.epoch, "gid": "0000000000010001"}

    async def scenario() -> dict[str, Any]:
        # Django runs these sync views through asgiref, in a copy of this task's context.
        started = await asgi_post(f"{AGENT}/tasks/{task.pk}/started", report, registration.token)
        assert started == 200
        assert current_log_context() == {}
        registered = await asgi_post(f"{AGENT}/register", {"name": "worker2"}, join_key)
        assert registered == 200
        return current_log_context()

    left_over = async_to_sync(scenario)()

    assert left_over == {}
    (started,) = lines(records, f"task {task.pk} started on worker1")
    assert ids(started) == (task.pk, "worker1")
    (registered,) = lines(records, "worker worker2 registered")
    assert ids(registered) == (None, "worker2")


@pytest.mark.django_db(transaction=True)
def test_the_agent_websocket_logs_with_its_worker_name(
    caplog: pytest.LogCaptureFixture, settings: Any, registration: Registration
) -> None:
    records = captured(caplog)
    settings.MAINTENANCE_ENABLED = False
    headers = [(b"authorization", f"Bearer {registration.token}".encode())]

    async def scenario() -> None:
        socket = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
        assert (await socket.connect(timeout=5))[0]
        assert (await socket.receive_json_from(timeout=5))["type"] == "sync"
        await socket.disconnect()

    async_to_sync(scenario)()

    assert [ids(r) for r in lines(records, "agent websocket")] == [(None, "worker1")] * 2
