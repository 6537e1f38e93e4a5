"""`GET /metrics`: Prometheus text from the database, for admin keys or the metrics token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import services
from dispatcher.keys import api_key_create
from dispatcher.models import ErrorClass, Task, TaskStatus, WebhookDelivery
from dispatcher.placement import task_assign_pending
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def admin_key() -> str:
    return api_key_create(name="prometheus", scope="admin")[1]


def test_metrics_count_tasks_workers_bytes_and_failures_from_the_database(
    client: Client, admin_key: str, register_worker: Callable[..., Registration]
) -> None:
    register_worker("worker1", max_tasks=1)
    old = services.task_create(url="http://e.x/old")
    services.task_create(url="http://e.x/new")
    Task.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    task_assign_pending()  # the oldest is placed; one stays pending
    done = services.task_create(url="http://e.x/done")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.COMPLETED, completed_length=1000)
    for error_class in (ErrorClass.PERMANENT, ErrorClass.PERMANENT, ErrorClass.TRANSIENT):
        failed = services.task_create(url="http://e.x/f")
        Task.objects.filter(pk=failed.pk).update(status=TaskStatus.FAILED, error_class=error_class)
    services.task_retry(task=Task.objects.filter(status=TaskStatus.FAILED).first())

    response = client.get("/metrics", HTTP_X_API_KEY=admin_key)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = _samples(response.content.decode())
    assert samples[("ariacluster_tasks", (("status", "queued"),))] == 1
    assert samples[("ariacluster_tasks", (("status", "pending"),))] == 2
    assert samples[("ariacluster_queue_length", ())] == 2
    assert 0 <= samples[("ariacluster_oldest_pending_task_age_seconds", ())] < 60
    assert samples[("ariacluster_workers", (("status", "busy"),))] == 1
    assert samples[("ariacluster_slots_used", ())] == 1
    assert samples[("ariacluster_downloaded_bytes", ())] == 1000
    assert samples[("ariacluster_task_retries_total", ())] == 1
    assert samples[("ariacluster_failed_tasks", (("error_class", "permanent"),))] == 1
    assert samples[("ariacluster_failed_tasks", (("error_class", "transient"),))] == 1
    assert samples[("ariacluster_download_speed_bytes", ())] == 0


def test_the_age_of_the_oldest_pending_task_is_reported(client: Client, admin_key: str) -> None:
    task = services.task_create(url="http://e.x/a")
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(hours=1))

    samples = _samples(client.get("/metrics", HTTP_X_API_KEY=admin_key).content.decode())

    assert 3590 < samples[("ariacluster_oldest_pending_task_age_seconds", ())] < 3700


@pytest.mark.parametrize("scope", ["read", "write"])
def test_keys_below_admin_scope_are_refused(client: Client, scope: str) -> None:
    _, key = api_key_create(name="low", scope=scope)

    assert client.get("/metrics", HTTP_X_API_KEY=key).status_code == 401


def test_anonymous_scrapes_are_refused(client: Client) -> None:
    response = client.get("/metrics")

    assert response.status_code == 401
    assert "admin scope" in response.json()["error"]


def test_the_metrics_token_is_accepted_as_a_bearer_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-me"

    good = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    bad = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess")

    assert good.status_code == 200
    assert "ariacluster_tasks" in good.content.decode()
    assert bad.status_code == 401


def test_without_a_configured_token_no_bearer_token_works(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_count_webhook_deliveries_by_status(client: Client, admin_key: str) -> None:
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    for status in ("pending", "delivered", "delivered", "failed"):
        WebhookDelivery.objects.create(
            event="task.completed", task=task, url="https://h.example/", status=status
        )

    samples = _samples(client.get("/metrics", HTTP_X_API_KEY=admin_key).content.decode())

    assert samples[("ariacluster_webhook_deliveries", (("status", "pending"),))] == 1
    assert samples[("ariacluster_webhook_deliveries", (("status", "delivered"),))] == 2
    assert samples[("ariacluster_webhook_deliveries", (("status", "failed"),))] == 1


def test_placement_timings_and_agent_calls_are_exported_per_process(
    client: Client, admin_key: str, register_worker: Callable[..., Registration]
) -> None:
    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics", HTTP_X_API_KEY=admin_key)
        assert response.status_code == 200
        return _samples(response.content.decode())

    heartbeats = ("ariacluster_agent_reports_total", (("kind", "heartbeat"),))
    waits = ("ariacluster_placement_wait_seconds_count", ())
    passes = ("ariacluster_placement_pass_seconds_count", ())
    before = scrape()
    registration = register_worker("worker1", max_tasks=2)
    services.task_create(url="http://e.x/a")
    services.task_create(url="http://e.x/b")
    task_assign_pending()
    answer = client.post(
        "/api/agent/v1/heartbeat",
        {"slots_used": 0, "free_disk": 10**9, "tasks": []},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {registration.token}",
    )
    assert answer.status_code == 200, answer.content

    after = scrape()
    assert after[waits] == before.get(waits, 0) + 2
    assert after[passes] >= before.get(passes, 0) + 1
    assert after[heartbeats] == before.get(heartbeats, 0) + 1
