"""The workers page: load, versions and current tasks; drain, undrain and remove for staff."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dispatcher import services
from dispatcher.placement import task_assign_pending
from dispatcher.tests.dashboard_fixtures import HTMX, member, member_client, staff, staff_client
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def test_the_page_lists_workers_with_slots_versions_and_current_tasks(
    staff_client: Client, registration: Registration
) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    task_assign_pending()
    body = staff_client.get("/workers/").content.decode()
    assert f'id="worker-{registration.worker.pk}"' in body
    assert "aria2 1.37.0" in body and "agent 0.1.0" in body
    assert "1/5" in body
    assert f"#{task.pk}" in body


def test_the_workers_page_needs_no_query_per_worker(
    staff_client: Client, register_worker: Callable[..., Registration]
) -> None:
    register_worker("a")
    staff_client.get("/workers/")
    with CaptureQueriesContext(connection) as one:
        staff_client.get("/workers/")
    for name in "bcdef":
        register_worker(name)
    with CaptureQueriesContext(connection) as six:
        staff_client.get("/workers/")
    assert len(one) == len(six)


def test_drain_and_undrain(staff_client: Client, registration: Registration) -> None:
    worker = registration.worker
    assert staff_client.post(f"/workers/{worker.pk}/drain/").status_code == 302
    worker.refresh_from_db()
    assert worker.draining
    response = staff_client.post(f"/workers/{worker.pk}/undrain/", **HTMX)
    assert response.content.decode().lstrip().startswith('<div id="worker-table"')
    worker.refresh_from_db()
    assert not worker.draining


def test_an_online_worker_cannot_be_removed(
    staff_client: Client, registration: Registration
) -> None:
    body = staff_client.post(f"/workers/{registration.worker.pk}/remove/", **HTMX).content.decode()
    assert "only offline workers can be removed" in body
    assert Worker.objects.filter(pk=registration.worker.pk).exists()


def test_an_offline_worker_is_removed(staff_client: Client, registration: Registration) -> None:
    Worker.objects.filter(pk=registration.worker.pk).update(status=WorkerStatus.OFFLINE)
    staff_client.post(f"/workers/{registration.worker.pk}/remove/")
    assert not Worker.objects.exists()


def test_the_rows_fragment_renders_just_the_asked_workers(
    staff_client: Client, register_worker: Callable[..., Registration]
) -> None:
    a = register_worker("a").worker
    register_worker("b")
    body = staff_client.get(f"/workers/rows/?ids={a.pk}").content.decode()
    assert f'id="worker-{a.pk}"' in body
    assert body.count("<tr ") == 1


def test_members_see_workers_but_cannot_change_them(
    member_client: Client, member: User, registration: Registration
) -> None:
    body = member_client.get("/workers/").content.decode()
    assert "worker1" in body and ">Drain<" not in body
    assert member_client.post(f"/workers/{registration.worker.pk}/drain/").status_code == 403
