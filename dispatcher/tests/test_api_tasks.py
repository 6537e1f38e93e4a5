"""The user REST API for tasks: the original paths and shapes, v1 paths, batch, filters, actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from dispatcher import services
from dispatcher.models import Task, TaskEvent, TaskStatus
from dispatcher.placement import task_assign_pending
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

ORIGINAL_FIELDS = {
    "id",
    "url",
    "status",
    "priority",
    "worker_id",
    "options",
    "progress",
    "download_speed",
    "error_message",
    "result",
    "created_at",
    "updated_at",
}


def make_task(url: str = "http://example.com/file.iso", **fields: Any) -> Task:
    return services.task_create(url=url, **fields)


@pytest.mark.parametrize("path", ["/api/tasks", "/api/v1/tasks/"])
def test_creating_a_task_with_the_original_body_answers_201_in_the_original_shape(
    api_client: APIClient, path: str
) -> None:
    body = {"url": "http://example.com/file.iso", "options": {"split": 4}, "priority": 3}

    response = api_client.post(path, body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert ORIGINAL_FIELDS <= set(data)
    assert data["url"] == "http://example.com/file.iso"
    assert data["status"] == "pending"
    assert data["priority"] == 3
    assert data["worker_id"] is None
    assert data["options"] == {"split": "4"}
    assert data["progress"] == 0
    assert data["download_speed"] == 0
    assert data["error_message"] == ""
    assert data["result"] is None
    task = Task.objects.get(pk=data["id"])
    assert task.uris == ["http://example.com/file.iso"]
    assert list(task.events.values_list("kind", flat=True)) == ["created"]


def test_a_task_with_mirrors_keeps_every_uri(api_client: APIClient) -> None:
    uris = ["http://a.example/f.iso", "ftp://b.example/f.iso"]

    response = api_client.post("/api/v1/tasks/", {"uris": uris, "tags": ["ssd"]}, format="json")

    assert response.status_code == 201
    assert response.json()["uris"] == uris
    assert response.json()["url"] == uris[0]
    assert response.json()["tags"] == ["ssd"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://e.x/f", "options": {"dir": "/"}}, "options"),
        ({"url": "http://e.x/f", "priority": 7}, "priority"),
        ({"url": "http://e.x/f", "owner": 1}, "owner"),
        ({}, "url"),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_stores_nothing(
    api_client: APIClient, body: dict[str, Any], field: str
) -> None:
    response = api_client.post("/api/tasks", body, format="json")

    assert response.status_code == 400
    data = response.json()
    assert set(data) == {"error", "detail"}
    assert isinstance(data["detail"][field], list) and data["detail"][field]
    assert Task.objects.count() == 0
    assert TaskEvent.objects.count() == 0


def test_a_body_that_is_not_an_object_answers_400(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/tasks/", ["http://e.x/f"], format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()["detail"]


def test_malformed_json_answers_400_not_500(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/tasks/", "{nope", content_type="application/json")

    assert response.status_code == 400
    assert "error" in response.json()


def test_a_batch_creates_every_task(api_client: APIClient) -> None:
    items = [{"url": f"http://e.x/{i}.bin", "priority": "high"} for i in range(3)]

    response = api_client.post("/api/v1/tasks/batch/", {"tasks": items}, format="json")

    assert response.status_code == 201
    created = response.json()["tasks"]
    assert [t["url"] for t in created] == [i["url"] for i in items]
    assert Task.objects.filter(priority=3).count() == 3
    assert TaskEvent.objects.filter(kind="created").count() == 3


def test_a_batch_with_one_bad_item_creates_nothing_and_keys_errors_by_index(
    api_client: APIClient,
) -> None:
    items = [
        {"url": "http://e.x/ok"},
        {"url": "gopher://e.x/bad"},
        "nope",
        {"url": "http://e.x/2", "color": "red"},
    ]

    response = api_client.post("/api/v1/tasks/batch/", {"tasks": items}, format="json")

    assert response.status_code == 400
    errors = response.json()["detail"]["tasks"]
    assert set(errors) == {"1", "2", "3"}
    assert "url" in errors["1"]
    assert Task.objects.count() == 0


def test_an_empty_batch_is_refused(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/tasks/batch/", {"tasks": []}, format="json")

    assert response.status_code == 400
    assert "tasks" in response.json()["detail"]


def test_the_list_is_newest_first_and_paginated(api_client: APIClient) -> None:
    tasks = [make_task(f"http://e.x/{i}.bin") for i in range(5)]

    response = api_client.get("/api/v1/tasks/?page_size=2")

    data = response.json()
    assert response.status_code == 200
    assert data["count"] == 5
    assert [t["id"] for t in data["results"]] == [tasks[4].pk, tasks[3].pk]
    assert data["next"] is not None
    last = api_client.get("/api/v1/tasks/?page_size=2&page=3").json()
    assert [t["id"] for t in last["results"]] == [tasks[0].pk]


def test_the_list_filters_by_status_worker_tag_and_search(
    api_client: APIClient, registration: Registration
) -> None:
    placed = make_task("http://e.x/placed.iso")
    task_assign_pending()
    paused = make_task("http://e.x/paused.iso", tags=["ssd", "site=home"])
    services.task_pause(task=paused)
    other = make_task("http://mirror.example/other.tar", tags=["hdd"])

    def ids(query: str) -> set[int]:
        response = api_client.get(f"/api/v1/tasks/?{query}")
        assert response.status_code == 200, response.json()
        return {t["id"] for t in response.json()["results"]}

    assert ids("status=queued") == {placed.pk}
    assert ids("status=paused,pending") == {paused.pk, other.pk}
    assert ids(f"worker={registration.worker.pk}") == {placed.pk}
    assert ids("worker=worker1") == {placed.pk}
    assert ids("tag=ssd") == {paused.pk}
    assert ids("tag=site=home") == {paused.pk}
    assert ids("tag=ss") == set()
    assert ids("search=mirror.example") == {other.pk}
    assert ids("search=PAUSED") == {paused.pk}


def test_an_unknown_status_filter_answers_400(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/tasks/?status=running")

    assert response.status_code == 400
    assert "status" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/tasks/{id}", "/api/v1/tasks/{id}/"])
def test_a_task_can_be_read_by_id(api_client: APIClient, path: str) -> None:
    task = make_task()

    response = api_client.get(path.format(id=task.pk))

    assert response.status_code == 200
    assert response.json()["id"] == task.pk


def test_an_unknown_task_answers_404_in_the_error_shape(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/tasks/999999/")

    assert response.status_code == 404
    assert set(response.json()) == {"error", "detail"}


@pytest.mark.parametrize("path", ["/api/tasks/{id}", "/api/v1/tasks/{id}/"])
def test_delete_cancels_the_task_and_keeps_its_row(api_client: APIClient, path: str) -> None:
    task = make_task()

    response = api_client.delete(path.format(id=task.pk))

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELED
    assert task.finished_at is not None


def test_cancelling_a_finished_task_is_refused_with_409(api_client: APIClient) -> None:
    task = make_task()
    services.task_cancel(task=task)

    response = api_client.delete(f"/api/v1/tasks/{task.pk}/")

    assert response.status_code == 409
    assert "canceled" in response.json()["error"]
    assert task.events.filter(kind="canceled").count() == 1


def test_pause_then_resume_of_an_unplaced_task_returns_it_to_pending(
    api_client: APIClient,
) -> None:
    task = make_task()

    paused = api_client.post(f"/api/v1/tasks/{task.pk}/pause/")
    resumed = api_client.post(f"/api/v1/tasks/{task.pk}/resume/")

    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert resumed.status_code == 200 and resumed.json()["status"] == "pending"


def test_resume_of_a_placed_task_puts_it_back_on_its_worker(
    api_client: APIClient, registration: Registration
) -> None:
    task = make_task()
    task_assign_pending()
    api_client.post(f"/api/v1/tasks/{task.pk}/pause/")

    response = api_client.post(f"/api/v1/tasks/{task.pk}/resume/")

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["worker_id"] == registration.worker.pk


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        (services.task_cancel, "pause"),
        (services.task_cancel, "resume"),
        (services.task_pause, "pause"),
        (None, "resume"),
        (services.task_cancel, "cancel"),
    ],
)
def test_an_action_the_status_forbids_answers_409_and_changes_nothing(
    api_client: APIClient, setup: Callable[..., Task] | None, action: str
) -> None:
    task = make_task()
    if setup is not None:
        setup(task=task)
    task.refresh_from_db()
    before = (task.status, task.events.count())

    response = api_client.post(f"/api/v1/tasks/{task.pk}/{action}/")

    assert response.status_code == 409
    task.refresh_from_db()
    assert (task.status, task.events.count()) == before


def test_retry_of_a_canceled_task_queues_it_again_from_scratch(api_client: APIClient) -> None:
    task = make_task()
    services.task_cancel(task=task)

    response = api_client.post(f"/api/v1/tasks/{task.pk}/retry/")

    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "pending"
    assert data["attempts"] == 0
    assert data["finished_at"] is None


def test_retry_of_a_running_task_is_refused(
    api_client: APIClient, registration: Registration
) -> None:
    task = make_task()
    task_assign_pending()

    response = api_client.post(f"/api/v1/tasks/{task.pk}/retry/")

    assert response.status_code == 409


def test_priority_can_be_changed_by_action_or_patch(api_client: APIClient) -> None:
    task = make_task()

    by_action = api_client.post(
        f"/api/v1/tasks/{task.pk}/priority/", {"priority": "urgent"}, format="json"
    )
    by_patch = api_client.patch(f"/api/v1/tasks/{task.pk}/", {"priority": 1}, format="json")

    assert by_action.status_code == 200 and by_action.json()["priority"] == 4
    assert by_patch.status_code == 200 and by_patch.json()["priority"] == 1
    assert by_patch.json()["priority_name"] == "low"


def test_a_bad_priority_answers_400(api_client: APIClient) -> None:
    task = make_task()

    response = api_client.post(f"/api/v1/tasks/{task.pk}/priority/", {"priority": 9}, format="json")

    assert response.status_code == 400
    assert "priority" in response.json()["detail"]
    task.refresh_from_db()
    assert task.priority == 2


def test_patch_takes_only_priority(api_client: APIClient) -> None:
    task = make_task()

    response = api_client.patch(f"/api/v1/tasks/{task.pk}/", {"status": "completed"}, format="json")

    assert response.status_code == 400
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING


def test_the_events_endpoint_lists_the_history_in_order(
    api_client: APIClient, registration: Registration
) -> None:
    task = make_task()
    task_assign_pending()
    services.task_cancel(task=task)

    response = api_client.get(f"/api/v1/tasks/{task.pk}/events/")

    assert response.status_code == 200
    events = response.json()
    assert [e["kind"] for e in events] == ["created", "assigned", "canceled"]
    assert events[1]["worker_name"] == "worker1"
    assert events[1]["epoch"] == 1
