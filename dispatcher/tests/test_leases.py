"""Leases: a silent worker loses its tasks (new epoch), old-epoch reports are refused, it can come
back, long-offline workers are removed, and expiry is safe to run twice or from two connections.

Time is moved by setting `last_heartbeat` / `status_changed_at` in the past, never by sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher import leases, services
from dispatcher.leases import StaleLease, lease_expire_stale, worker_remove_offline
from dispatcher.maintenance import maintenance_tick
from dispatcher.models import Task, TaskEvent, TaskStatus
from dispatcher.placement import task_assign_pending
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_startup_grace")]

SILENT = timedelta(seconds=31)


def place(count: int, url: str = "http://e.x/{}") -> list[Task]:
    tasks = [services.task_create(url=url.format(i)) for i in range(count)]
    task_assign_pending()
    for task in tasks:
        task.refresh_from_db()
    return tasks


def go_silent(worker: Worker, make_live: Callable[..., Worker], by: timedelta = SILENT) -> None:
    make_live(worker, at=timezone.now() - by)


def test_a_silent_workers_tasks_return_to_pending_with_the_next_epoch(
    registration: Registration, make_live: Callable[..., Worker]
) -> None:
    worker = registration.worker
    queued, downloading = place(2)
    leases.task_report_started(worker=worker, task_id=downloading.pk, epoch=1, gid="0" * 16)
    go_silent(worker, make_live)

    expired = lease_expire_stale()

    assert expired == [worker.pk]
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.OFFLINE
    for task in (queued, downloading):
        task.refresh_from_db()
        assert task.status == TaskStatus.PENDING
        assert task.epoch == 2
        assert task.worker_id is None
        assert task.pending_reason == "lease expired on worker1"
        event = task.events.get(kind="lease_expired")
        assert (event.epoch, event.worker_id) == (1, worker.pk)


def test_a_paused_task_of_a_silent_worker_stays_paused_but_loses_its_lease(
    registration: Registration, make_live: Callable[..., Worker]
) -> None:
    (task,) = place(1)
    services.task_pause(task=task)
    go_silent(registration.worker, make_live)

    lease_expire_stale()

    task.refresh_from_db()
    assert (task.status, task.epoch, task.worker_id) == (TaskStatus.PAUSED, 2, None)


def test_a_worker_within_the_heartbeat_timeout_keeps_its_tasks(
    registration: Registration, make_live: Callable[..., Worker]
) -> None:
    (task,) = place(1)
    go_silent(registration.worker, make_live, by=timedelta(seconds=29))

    assert lease_expire_stale() == []

    task.refresh_from_db()
    assert (task.status, task.epoch) == (TaskStatus.QUEUED, 1)


def test_the_heartbeat_timeout_comes_from_the_config(
    registration: Registration,
    make_live: Callable[..., Worker],
    configure: Callable[..., None],
) -> None:
    configure(worker_management={"heartbeat_interval": 60, "heartbeat_timeout": 120})
    go_silent(registration.worker, make_live)

    assert lease_expire_stale() == []
    assert lease_expire_stale(now=timezone.now() + timedelta(seconds=120)) == [
        registration.worker.pk
    ]


def test_nothing_expires_within_one_timeout_of_the_process_starting(
    registration: Registration,
    make_live: Callable[..., Worker],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.ARIACLUSTER_NO_STARTUP_GRACE = False
    monkeypatch.setattr(leases, "PROCESS_STARTED", time.monotonic())
    place(1)
    go_silent(registration.worker, make_live, by=timedelta(hours=1))

    assert lease_expire_stale() == []

    monkeypatch.setattr(leases, "PROCESS_STARTED", time.monotonic() - 31)
    assert lease_expire_stale() == [registration.worker.pk]


def test_reports_for_the_old_epoch_are_refused_after_expiry(
    registration: Registration, make_live: Callable[..., Worker], agent_client: APIClient
) -> None:
    worker = registration.worker
    (task,) = place(1)
    go_silent(worker, make_live)
    lease_expire_stale()

    with pytest.raises(StaleLease):
        leases.task_report_completed(worker=worker, task_id=task.pk, epoch=1, files=[])
    with pytest.raises(StaleLease):
        leases.task_report_failed(
            worker=worker, task_id=task.pk, epoch=1, error_code=2, error_message=""
        )
    response = agent_client.post(
        f"/api/agent/v1/tasks/{task.pk}/started", {"epoch": 1}, format="json"
    )
    progress = agent_client.post(
        "/api/agent/v1/progress", {"tasks": [{"task_id": task.pk, "epoch": 1}]}, format="json"
    )

    assert response.status_code == 409
    assert progress.json()["stale"] == [task.pk]
    task.refresh_from_db()
    assert (task.status, task.epoch) == (TaskStatus.PENDING, 2)


def test_a_worker_that_comes_back_is_online_again_and_gets_work(
    registration: Registration,
    make_live: Callable[..., Worker],
    agent_client: APIClient,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    worker = registration.worker
    (task,) = place(1)
    go_silent(worker, make_live)
    lease_expire_stale()

    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(
            "/api/agent/v1/heartbeat", {"tasks": [{"task_id": task.pk, "epoch": 1}]}, format="json"
        )

    assert response.status_code == 200
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE
    task.refresh_from_db()
    # Coming back triggers placement: the task gets a new lease (epoch 3), never the old one.
    assert (task.status, task.worker_id, task.epoch) == (TaskStatus.QUEUED, worker.pk, 3)
    again = agent_client.post("/api/agent/v1/heartbeat", {}, format="json")
    assert again.json()["tasks"][0]["epoch"] == 3


def test_expiry_run_twice_moves_each_task_once(
    registration: Registration, make_live: Callable[..., Worker]
) -> None:
    tasks = place(3)
    go_silent(registration.worker, make_live)

    first = lease_expire_stale()
    second = lease_expire_stale()

    assert (first, second) == ([registration.worker.pk], [])
    assert set(Task.objects.values_list("epoch", flat=True)) == {2}
    assert TaskEvent.objects.filter(kind="lease_expired").count() == len(tasks)


@pytest.mark.django_db(transaction=True)
def test_expiry_from_two_connections_at_once_moves_each_task_once(
    register_worker: Callable[..., Registration], make_live: Callable[..., Worker]
) -> None:
    workers = [register_worker(f"w{i}", max_tasks=5).worker for i in range(4)]
    place(20)
    for worker in workers:
        go_silent(worker, make_live)
    barrier = threading.Barrier(2)

    def run() -> list[int]:
        try:
            barrier.wait()
            return lease_expire_stale()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(run) for _ in range(2)]
        # .result() re-raises what a thread hit, e.g. "database is locked".
        results = [future.result(timeout=30) for future in futures]

    assert sorted(results[0] + results[1]) == sorted(w.pk for w in workers)
    assert set(Task.objects.values_list("epoch", flat=True)) == {2}
    assert TaskEvent.objects.filter(kind="lease_expired").count() == 20
    assert not Task.objects.filter(worker__isnull=False).exists()


def test_auto_remove_offline_removes_only_workers_offline_past_the_threshold(
    register_worker: Callable[..., Registration], configure: Callable[..., None]
) -> None:
    configure(worker_management={"auto_remove_offline": True, "offline_threshold": 600})
    now = timezone.now()
    long_gone = register_worker("long-gone").worker
    recent = register_worker("recent").worker
    online = register_worker("online").worker
    Worker.objects.filter(pk=long_gone.pk).update(
        status=WorkerStatus.OFFLINE, status_changed_at=now - timedelta(seconds=601)
    )
    Worker.objects.filter(pk=recent.pk).update(
        status=WorkerStatus.OFFLINE, status_changed_at=now - timedelta(seconds=599)
    )
    Worker.objects.filter(pk=online.pk).update(status_changed_at=now - timedelta(days=1))

    assert worker_remove_offline(now=now) == 1

    assert set(Worker.objects.values_list("name", flat=True)) == {"recent", "online"}


def test_without_auto_remove_offline_nothing_is_removed(
    registration: Registration, configure: Callable[..., None]
) -> None:
    configure(worker_management={"auto_remove_offline": False})
    Worker.objects.update(
        status=WorkerStatus.OFFLINE, status_changed_at=timezone.now() - timedelta(days=30)
    )

    assert worker_remove_offline() == 0
    assert Worker.objects.count() == 1


def test_a_maintenance_tick_expires_leases_and_places_the_tasks_elsewhere(
    register_worker: Callable[..., Registration], make_live: Callable[..., Worker]
) -> None:
    silent = register_worker("silent").worker
    (task,) = place(1)
    assert task.worker_id == silent.pk
    go_silent(silent, make_live)
    healthy = register_worker("healthy").worker

    done = maintenance_tick()

    assert done == {"expired_workers": 1, "removed_workers": 0, "placed": 1}
    task.refresh_from_db()
    assert (task.worker_id, task.epoch) == (healthy.pk, 3)


def test_a_progress_batch_writes_every_field_to_the_right_row(
    register_worker: Callable[..., Registration],
) -> None:
    worker = register_worker("w1", max_tasks=3).worker
    first, second, third = place(3)
    before = timezone.now()
    items = [
        leases.ProgressItem(
            task_id=task.pk,
            epoch=task.epoch,
            status="active",
            total_length=1_000 * (n + 1),
            completed_length=100 * (n + 1),
            download_speed=10 * (n + 1),
            upload_speed=n,
            connections=n + 1,
            gid=f"{n + 1:016x}",
            phase="fetching metadata" if n == 1 else "",
            uploaded_length=7 * n,
            files=[{"path": "a.bin", "size": 5, "completed": n, "selected": True}]
            if n == 2
            else None,
        )
        for n, task in enumerate([first, second, third])
    ]

    assert leases.task_report_progress(worker=worker, items=items) == []

    rows = {t.pk: t for t in Task.objects.filter(pk__in=[first.pk, second.pk, third.pk])}
    for n, task in enumerate([first, second, third]):
        row = rows[task.pk]
        assert row.status == TaskStatus.DOWNLOADING
        assert (row.total_length, row.completed_length) == (1_000 * (n + 1), 100 * (n + 1))
        assert (row.download_speed, row.upload_speed, row.connections) == (10 * (n + 1), n, n + 1)
        assert row.gid == f"{n + 1:016x}"
        assert row.uploaded_length == 7 * n
        assert row.started_at is not None and before <= row.started_at <= timezone.now()
        assert row.updated_at >= before
    assert rows[second.pk].phase == "fetching metadata" and rows[first.pk].phase == ""
    assert rows[third.pk].files == [{"path": "a.bin", "size": 5, "completed": 2, "selected": True}]
    assert rows[first.pk].files == first.files
