"""Cluster status, the workers API and the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from dispatcher import services
from dispatcher.placement import task_assign_pending
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/status", "/api/v1/status/"])
def test_status_counts_tasks_workers_and_slots(
    api_client: APIClient, register_worker: Callable[..., Registration], path: str
) -> None:
    register_worker("worker1", max_tasks=1)
    register_worker("worker2", max_tasks=3)
    for i in range(3):
        services.task_create(url=f"http://e.x/{i}")
    Worker.objects.filter(name="worker2").update(draining=True)
    task_assign_pending()

    response = api_client.get(path)

    assert response.status_code == 200
    data = response.json()
    assert set(data) >= {
        "status",
        "tasks",
        "total_tasks",
        "workers",
        "total_workers",
        "download_speed",
        "upload_speed",
        "queue_length",
        "slots",
    }
    assert data["status"] == "ok"
    assert data["tasks"]["queued"] == 1
    assert data["tasks"]["pending"] == 2
    assert data["total_tasks"] == 3
    assert data["queue_length"] == 2
    assert data["workers"] == {"online": 1, "busy": 1, "offline": 0, "error": 0}
    assert data["total_workers"] == 2
    assert data["slots"] == {"used": 1, "total": 4}


@pytest.mark.parametrize("path", ["/api/workers", "/api/v1/workers/"])
def test_the_workers_list_shows_status_and_slots(
    api_client: APIClient, register_worker: Callable[..., Registration], path: str
) -> None:
    register_worker("alpha", max_tasks=2, capabilities={"supports_bt": False})
    offline = register_worker("beta").worker
    Worker.objects.filter(pk=offline.pk).update(status=WorkerStatus.OFFLINE)
    services.task_create(url="http://e.x/1")
    task_assign_pending()

    response = api_client.get(path)

    assert response.status_code == 200
    rows = {w["name"]: w for w in response.json()}
    assert rows["alpha"]["status"] == "online"
    assert rows["alpha"]["slots_used"] == 1
    assert rows["alpha"]["max_tasks"] == 2
    assert rows["alpha"]["capabilities"] == {"supports_bt": False}
    assert rows["beta"]["status"] == "offline"
    assert "token_hash" not in rows["alpha"]
    assert "token_prefix" not in rows["alpha"]


@pytest.mark.parametrize("path", ["/api/workers/{id}", "/api/v1/workers/{id}/"])
def test_a_worker_can_be_read_with_the_tasks_it_holds(
    api_client: APIClient, registration: Registration, path: str
) -> None:
    task = services.task_create(url="http://e.x/1")
    task_assign_pending()

    response = api_client.get(path.format(id=registration.worker.pk))

    assert response.status_code == 200
    assert response.json()["name"] == "worker1"
    assert response.json()["tasks"] == [task.pk]


def test_an_unknown_worker_answers_404(api_client: APIClient) -> None:
    assert api_client.get("/api/v1/workers/424242/").status_code == 404


def test_draining_stops_new_placement_and_undrain_restarts_it(
    api_client: APIClient,
    registration: Registration,
    django_capture_on_commit_callbacks: Callable[..., object],
) -> None:
    worker_id = registration.worker.pk

    drained = api_client.post(f"/api/v1/workers/{worker_id}/drain/")
    task = services.task_create(url="http://e.x/1")
    task_assign_pending()

    assert drained.status_code == 200 and drained.json()["draining"] is True
    task.refresh_from_db()
    assert task.status == "pending"
    with django_capture_on_commit_callbacks(execute=True):
        undrained = api_client.post(f"/api/v1/workers/{worker_id}/undrain/")
    assert undrained.json()["draining"] is False
    task.refresh_from_db()
    assert task.status == "queued"


def test_only_an_offline_worker_holding_nothing_can_be_deleted(
    api_client: APIClient, registration: Registration
) -> None:
    worker = registration.worker

    online = api_client.delete(f"/api/v1/workers/{worker.pk}/")
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.OFFLINE)
    offline = api_client.delete(f"/api/v1/workers/{worker.pk}/")

    assert online.status_code == 409
    assert offline.status_code == 204
    assert not Worker.objects.filter(pk=worker.pk).exists()


def test_an_offline_worker_still_holding_a_task_cannot_be_deleted(
    api_client: APIClient, registration: Registration
) -> None:
    services.task_create(url="http://e.x/1")
    task_assign_pending()
    Worker.objects.filter(pk=registration.worker.pk).update(status=WorkerStatus.OFFLINE)

    response = api_client.delete(f"/api/v1/workers/{registration.worker.pk}/")

    assert response.status_code == 409
    assert "holds tasks" in response.json()["error"]


def test_the_openapi_schema_is_served(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    body = response.content.decode()
    assert "/api/v1/tasks/" in body
    assert "/api/agent/v1/register" in body
