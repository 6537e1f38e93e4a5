"""Retry spacing (fixed and exponential with jitter) and the poison-task bound on lease losses.

Time is moved, not waited for: not_before is compared with the clock around each report, and
heartbeats are set into the past to expire leases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import set_heartbeat
from dispatcher import leases, services
from dispatcher.models import ErrorClass, Task, TaskEvent, TaskEventKind, TaskStatus
from dispatcher.placement import task_assign_pending
from workers_app.services import Registration, worker_heartbeat

pytestmark = pytest.mark.django_db


def _fail_once(task: Task, registration: Registration) -> Task:
    """Place `task` on the worker and report a transient (timeout) failure for that lease."""
    Task.objects.filter(pk=task.pk).update(not_before=None)
    assert task_assign_pending() == 1
    task.refresh_from_db()
    return leases.task_report_failed(
        worker=registration.worker,
        task_id=task.pk,
        epoch=task.epoch,
        error_code=2,
        error_message="Timeout.",
    )


def test_fixed_backoff_waits_retry_delay_before_every_retry(
    registration: Registration, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"retry_delay": 120, "max_retries": 3, "retry_backoff": "fixed"})
    task = services.task_create(url="http://example.com/a.iso")
    for _ in range(3):
        before = timezone.now()
        task = _fail_once(task, registration)
        assert task.status == TaskStatus.PENDING
        assert (
            before + timedelta(seconds=120)
            <= task.not_before
            <= timezone.now() + timedelta(seconds=120)
        )


def test_exponential_backoff_doubles_with_jitter_up_to_the_cap(
    registration: Registration, configure: Callable[..., None]
) -> None:
    configure(
        task_assignment={
            "retry_delay": 10,
            "max_retries": 6,
            "retry_backoff": "exponential",
            "retry_delay_max": 50,
        }
    )
    task = services.task_create(url="http://example.com/b.iso")
    for ceiling in (10, 20, 40, 50, 50):
        before = timezone.now()
        task = _fail_once(task, registration)
        waited = (task.not_before - before).total_seconds()
        assert 0.5 * ceiling - 0.01 <= waited <= ceiling + 0.5, (ceiling, waited)


def test_an_always_failing_url_fails_after_exactly_the_configured_attempts(
    registration: Registration, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"retry_delay": 1, "max_retries": 2})
    task = services.task_create(url="http://example.com/c.iso")
    task = _fail_once(task, registration)
    task = _fail_once(task, registration)
    assert task.status == TaskStatus.PENDING
    task = _fail_once(task, registration)
    assert task.status == TaskStatus.FAILED
    assert task.attempts == 3
    assert "retries exhausted" in task.events.filter(kind=TaskEventKind.FAILED).get().message
    assert task.events.filter(kind=TaskEventKind.ASSIGNED).count() == 3


def test_a_task_whose_workers_keep_going_silent_stops_being_placed(
    register_worker: Callable[..., Registration],
    configure: Callable[..., None],
    no_startup_grace: None,
) -> None:
    configure(
        task_assignment={"max_lease_losses": 2},
        worker_management={"heartbeat_interval": 10, "heartbeat_timeout": 30},
    )
    worker = register_worker("victim").worker
    task = services.task_create(url="http://example.com/poison.iso")
    for loss in (1, 2):
        set_heartbeat(worker, at=timezone.now())
        worker_heartbeat(worker=worker, slots_used=0, download_speed=0, upload_speed=0, free_disk=0)
        assert task_assign_pending() == 1
        set_heartbeat(worker, at=timezone.now() - timedelta(seconds=60))
        assert leases.lease_expire_stale() == [worker.pk]
        task.refresh_from_db()
        if loss == 1:
            assert task.status == TaskStatus.PENDING
    assert task.status == TaskStatus.FAILED
    assert task.error_class == ErrorClass.PERMANENT
    assert "went silent 2 times" in task.error_message
    assert TaskEvent.objects.filter(task=task, kind=TaskEventKind.LEASE_EXPIRED).count() == 2
    # Failed tasks can be requeued by a person, and then run again.
    assert services.task_retry(task=task).status == TaskStatus.PENDING
