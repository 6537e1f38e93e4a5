"""The agent-facing HTTP API (docs/protocol.md): register, heartbeat, progress, task reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher import services
from dispatcher.models import Task, TaskEvent, TaskStatus
from dispatcher.placement import task_assign_pending
from workers_app.models import JoinKey, Worker
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

AGENT = "/api/agent/v1"
SHA = "a" * 64
REGISTER_BODY = {
    "name": "worker1",
    "hostname": "nas",
    "pid": 1234,
    "agent_version": "0.1.0",
    "aria2_version": "1.37.0",
    "max_tasks": 5,
    "free_disk": 123456789,
    "capabilities": {
        "disk_space": 0,
        "bandwidth": 0,
        "supports_bt": True,
        "supports_metalink": True,
        "tags": {"site": "home"},
    },
}


def register(key: str | None, body: dict[str, Any] | None = None) -> Any:
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_X_JOIN_KEY=key)
    return client.post(f"{AGENT}/register", body or REGISTER_BODY, format="json")


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def leased_task(url: str = "http://example.com/file.iso") -> Task:
    """A task created and placed on the (only) live worker."""
    task = services.task_create(url=url)
    assert task_assign_pending() >= 1
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    return task


PROTOCOL_KEYS = ("task_id", "epoch", "kind", "uris", "options", "state")


def protocol_view(assignment: dict[str, Any]) -> dict[str, Any]:
    """The Assignment fields docs/protocol.md defines (newer fields may be added beside them)."""
    return {key: assignment[key] for key in PROTOCOL_KEYS}


def report(client: APIClient, task_id: int, what: str, **body: Any) -> Any:
    return client.post(f"{AGENT}/tasks/{task_id}/{what}", body, format="json")


# Registration


def test_register_with_a_join_key_issues_a_worker_token(join_key: str) -> None:
    response = register(join_key)

    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["token"].startswith("acw_")
    assert data["heartbeat_interval"] == 10
    assert data["heartbeat_timeout"] == 30
    assert data["progress_interval"] == 1.0
    worker = Worker.objects.get(pk=data["worker_id"])
    assert worker.name == "worker1"
    assert worker.max_tasks == 5
    assert worker.tags == {"site": "home"}
    assert worker.last_heartbeat is not None
    assert data["token"] not in (worker.token_hash, worker.token_prefix)


def test_register_accepts_a_join_key_from_the_config_file(configure: Callable[..., None]) -> None:
    configure(security={"join_keys": ("original-cluster-secret",)})

    assert register("original-cluster-secret").status_code == 200
    assert register("some-other-secret").status_code == 401


@pytest.mark.parametrize("key", [None, "", "acj_deadbeef_nope", "nonsense"])
def test_register_without_a_valid_join_key_answers_401(key: str | None, join_key: str) -> None:
    response = register(key)

    assert response.status_code == 401
    assert Worker.objects.count() == 0


def test_a_revoked_join_key_cannot_register(join_key: str) -> None:
    JoinKey.objects.update(revoked_at=timezone.now())

    assert register(join_key).status_code == 401


def test_a_user_api_key_cannot_register(write_key: str) -> None:
    assert register(write_key).status_code == 401


def test_register_with_a_bad_body_answers_400(join_key: str) -> None:
    response = register(join_key, {**REGISTER_BODY, "name": "../etc", "max_tasks": 0})

    assert response.status_code == 400
    assert {"name", "max_tasks"} <= set(response.json()["detail"])


def test_registering_again_reuses_the_worker_and_revokes_the_old_token(join_key: str) -> None:
    first = register(join_key).json()
    task = leased_task()

    second = register(join_key, {**REGISTER_BODY, "max_tasks": 2}).json()

    assert second["worker_id"] == first["worker_id"]
    assert second["token"] != first["token"]
    assert Worker.objects.count() == 1
    assert Worker.objects.get().max_tasks == 2
    old = bearer(first["token"]).post(f"{AGENT}/heartbeat", {}, format="json")
    new = bearer(second["token"]).post(f"{AGENT}/heartbeat", {}, format="json")
    assert old.status_code == 401
    assert new.status_code == 200
    # Its tasks stay leased to it across the re-registration.
    assert [t["task_id"] for t in new.json()["tasks"]] == [task.pk]


# Credentials on the other endpoints


def test_a_user_api_key_is_refused_on_agent_endpoints(write_key: str) -> None:
    header = APIClient()
    header.credentials(HTTP_X_API_KEY=write_key)

    assert header.post(f"{AGENT}/heartbeat", {}, format="json").status_code == 401
    assert bearer(write_key).post(f"{AGENT}/heartbeat", {}, format="json").status_code == 401


def test_agent_endpoints_without_a_token_answer_401() -> None:
    response = APIClient().post(f"{AGENT}/heartbeat", {}, format="json")

    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]


# Heartbeat and progress


def test_heartbeat_records_load_and_returns_the_authoritative_assignments(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()
    paused = leased_task("http://example.com/second.iso")
    services.task_pause(task=paused)

    response = agent_client.post(
        f"{AGENT}/heartbeat",
        {
            "slots_used": 1,
            "download_speed": 1000,
            "upload_speed": 5,
            "free_disk": 999,
            "tasks": [{"task_id": task.pk, "epoch": task.epoch}],
        },
        format="json",
    )

    assert response.status_code == 200
    assert [protocol_view(a) for a in response.json()["tasks"]] == [
        {
            "task_id": task.pk,
            "epoch": 1,
            "kind": "uri",
            "uris": ["http://example.com/file.iso"],
            "options": {},
            "state": "run",
        },
        {
            "task_id": paused.pk,
            "epoch": 1,
            "kind": "uri",
            "uris": ["http://example.com/second.iso"],
            "options": {},
            "state": "pause",
        },
    ]
    worker = Worker.objects.get(pk=registration.worker.pk)
    assert (worker.slots_used, worker.download_speed, worker.free_disk) == (1, 1000, 999)


def test_progress_updates_own_tasks_and_returns_the_others_as_stale(
    agent_client: APIClient,
    register_worker: Callable[..., Registration],
    registration: Registration,
) -> None:
    mine = leased_task()
    other_worker = register_worker("worker2")
    Worker.objects.filter(pk=registration.worker.pk).update(draining=True)
    theirs = leased_task("http://example.com/theirs.iso")
    assert theirs.worker_id == other_worker.worker.pk
    item = {
        "status": "active",
        "total_length": 1000,
        "completed_length": 500,
        "download_speed": 100,
        "connections": 4,
    }

    response = agent_client.post(
        f"{AGENT}/progress",
        {
            "tasks": [
                {"task_id": mine.pk, "epoch": mine.epoch, "gid": "0" * 15 + "1", **item},
                {"task_id": theirs.pk, "epoch": theirs.epoch, **item},
                {"task_id": mine.pk + theirs.pk + 100, "epoch": 1, **item},
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    assert sorted(response.json()["stale"]) == sorted([theirs.pk, mine.pk + theirs.pk + 100])
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == TaskStatus.DOWNLOADING
    assert (mine.completed_length, mine.total_length, mine.connections) == (500, 1000, 4)
    assert mine.progress_percent == 50.0
    assert theirs.completed_length == 0


def test_progress_for_an_old_epoch_is_stale_and_changes_nothing(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()

    response = agent_client.post(
        f"{AGENT}/progress",
        {"tasks": [{"task_id": task.pk, "epoch": task.epoch - 1, "completed_length": 10}]},
        format="json",
    )

    assert response.json()["stale"] == [task.pk]
    task.refresh_from_db()
    assert task.completed_length == 0


# Task reports


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("started", {"gid": "0" * 16}),
        ("completed", {"files": []}),
        ("failed", {"error_code": 2}),
        ("released", {"reason": "x"}),
    ],
)
def test_a_report_for_a_wrong_epoch_answers_409_and_changes_nothing(
    agent_client: APIClient, registration: Registration, what: str, body: dict[str, Any]
) -> None:
    task = leased_task()

    response = report(agent_client, task.pk, what, epoch=task.epoch + 1, **body)

    assert response.status_code == 409
    assert "not leased" in response.json()["error"]
    after = Task.objects.get(pk=task.pk)
    assert (after.status, after.epoch, after.attempts) == (TaskStatus.QUEUED, task.epoch, 0)


@pytest.mark.parametrize("what", ["started", "completed", "failed", "released"])
def test_a_report_for_an_unknown_task_answers_404(agent_client: APIClient, what: str) -> None:
    response = report(agent_client, 987654, what, epoch=1, files=[])

    assert response.status_code == 404


def test_a_report_from_a_worker_that_does_not_hold_the_task_answers_409(
    register_worker: Callable[..., Registration], registration: Registration
) -> None:
    task = leased_task()
    intruder = register_worker("worker2")

    response = report(bearer(intruder.token), task.pk, "completed", epoch=task.epoch, files=[])

    assert response.status_code == 409
    assert Task.objects.get(pk=task.pk).status == TaskStatus.QUEUED


def test_started_moves_the_task_to_downloading_and_is_idempotent(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()
    gid = f"{task.pk:012x}{task.epoch:04x}"

    first = report(agent_client, task.pk, "started", epoch=task.epoch, gid=gid)
    again = report(agent_client, task.pk, "started", epoch=task.epoch, gid=gid)

    assert first.status_code == again.status_code == 200
    assert first.json() == {"task_id": task.pk, "status": "downloading", "epoch": task.epoch}
    task.refresh_from_db()
    assert task.gid == gid
    assert task.started_at is not None
    assert task.events.filter(kind="started").count() == 1


def test_completion_is_accepted_exactly_once(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()
    files = [{"path": f"task-{task.pk}/file.iso", "size": 1000, "sha256": SHA}]

    first = report(agent_client, task.pk, "completed", epoch=task.epoch, files=files)
    state = Task.objects.values().get(pk=task.pk)
    again = report(agent_client, task.pk, "completed", epoch=task.epoch, files=files)

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "completed"
    assert Task.objects.values().get(pk=task.pk) == state
    assert state["result"] == files
    assert state["completed_length"] == state["total_length"] == 1000
    assert TaskEvent.objects.filter(task=task, kind="completed").count() == 1


def test_completion_for_an_old_epoch_after_the_task_moved_is_refused(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()
    report(agent_client, task.pk, "released", epoch=task.epoch, reason="cannot add")

    response = report(agent_client, task.pk, "completed", epoch=task.epoch, files=[])

    assert response.status_code == 409


@pytest.mark.parametrize(
    "path", ["../outside.bin", "/etc/passwd", "task-1/../../x", "..", "a\x00b", ""]
)
def test_a_result_path_outside_the_download_dir_answers_400(
    agent_client: APIClient, registration: Registration, path: str
) -> None:
    task = leased_task()

    response = report(
        agent_client,
        task.pk,
        "completed",
        epoch=task.epoch,
        files=[{"path": path, "size": 1, "sha256": SHA}],
    )

    assert response.status_code == 400
    assert "files" in response.json()["detail"]
    assert Task.objects.get(pk=task.pk).status == TaskStatus.QUEUED


def test_a_transient_failure_retries_after_the_retry_delay(
    agent_client: APIClient, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"retry_delay": 120, "max_retries": 3})
    task = leased_task()
    before = timezone.now()

    response = report(
        agent_client, task.pk, "failed", epoch=task.epoch, error_code=2, error_message="Timeout."
    )

    after = timezone.now()
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    task.refresh_from_db()
    assert task.attempts == 1
    assert task.worker_id is None
    assert task.error_class == "transient"
    assert before + timedelta(seconds=120) <= task.not_before <= after + timedelta(seconds=120)
    assert "retry 1 of 3" in task.pending_reason
    # Not due yet: placement leaves it alone until not_before.
    assert task_assign_pending() == 0


def test_a_permanent_failure_fails_at_once_with_the_reason(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()

    response = report(
        agent_client,
        task.pk,
        "failed",
        epoch=task.epoch,
        error_code=3,
        error_message="Resource not found",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.error_class == "permanent"
    assert task.error_code == 3
    assert "404" in task.error_message and "Resource not found" in task.error_message
    assert task.finished_at is not None
    assert "permanent error" in task.events.get(kind="failed").message


def test_a_task_fails_when_its_retries_are_exhausted(
    agent_client: APIClient, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"retry_delay": 0, "max_retries": 1})
    task = leased_task()

    first = report(agent_client, task.pk, "failed", epoch=task.epoch, error_code=6)
    assert task_assign_pending() == 1
    task.refresh_from_db()
    second = report(agent_client, task.pk, "failed", epoch=task.epoch, error_code=6)

    assert first.json()["status"] == "pending"
    assert second.json()["status"] == "failed"
    task.refresh_from_db()
    assert task.attempts == 2
    assert "retries exhausted" in task.events.get(kind="failed").message


def test_a_worker_local_failure_moves_the_task_off_that_worker(
    agent_client: APIClient,
    registration: Registration,
    register_worker: Callable[..., Registration],
) -> None:
    task = leased_task()

    response = report(
        agent_client,
        task.pk,
        "failed",
        epoch=task.epoch,
        error_code=9,
        error_message="No space left on device",
    )

    assert response.json()["status"] == "pending"
    task.refresh_from_db()
    assert task.avoid_workers == [registration.worker.pk]
    assert task.not_before is None
    assert task.error_class == "worker_local"
    # The only worker is excluded, so the task waits; a second worker then gets it.
    assert task_assign_pending() == 0
    other = register_worker("worker2")
    assert task_assign_pending() == 1
    task.refresh_from_db()
    assert task.worker_id == other.worker.pk


def test_released_returns_the_task_to_pending_with_a_new_epoch(
    agent_client: APIClient, registration: Registration
) -> None:
    task = leased_task()
    Worker.objects.filter(pk=registration.worker.pk).update(draining=True)

    response = report(agent_client, task.pk, "released", epoch=task.epoch, reason="no aria2")

    assert response.status_code == 200
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    assert task.epoch == 2
    assert task.attempts == 0
    assert "no aria2" in task.pending_reason
