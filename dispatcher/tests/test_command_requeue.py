"""`requeue`: failed tasks by default, chosen ids, filters, stale running tasks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from dispatcher import services
from dispatcher.models import Task, TaskStatus
from dispatcher.placement import task_assign_pending
from dispatcher.tests.commands import run_command
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


def _failed(url: str) -> Task:
    task = services.task_create(url=url)
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.FAILED, error_message="404", attempts=3, finished_at=timezone.now()
    )
    return task


def test_without_options_every_failed_task_is_queued_again() -> None:
    failed = [_failed(f"http://e.x/{i}") for i in range(3)]
    done = services.task_create(url="http://e.x/done")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.COMPLETED)

    output = run_command("requeue").stdout

    assert "3 task(s) queued again, 0 refused." in output
    for task in failed:
        task.refresh_from_db()
        assert (task.status, task.attempts, task.error_message) == (TaskStatus.PENDING, 0, "")
    done.refresh_from_db()
    assert done.status == TaskStatus.COMPLETED


def test_a_running_task_chosen_by_id_moves_off_its_worker_with_a_new_epoch(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("worker1")
    task = services.task_create(url="http://e.x/a")
    task_assign_pending()
    task.refresh_from_db()
    epoch = task.epoch
    assert task.status == TaskStatus.QUEUED

    run_command("requeue", "--id", str(task.pk))

    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    assert task.worker is None
    assert task.epoch == epoch + 1


def test_a_completed_task_chosen_by_id_is_refused() -> None:
    task = services.task_create(url="http://e.x/a")
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.COMPLETED)

    with pytest.raises(CommandError, match="1 task"):
        run_command("requeue", "--id", str(task.pk))


def test_an_unknown_id_is_an_error() -> None:
    with pytest.raises(CommandError, match="no task with id 999"):
        run_command("requeue", "--id", "999")


def test_stale_picks_only_running_tasks_silent_for_that_long(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("worker1")
    old, fresh = (
        services.task_create(url="http://e.x/old"),
        services.task_create(url="http://e.x/n"),
    )
    task_assign_pending()
    Task.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=2))

    output = run_command("requeue", "--stale", "3600").stdout

    assert "1 task(s) queued again" in output
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == TaskStatus.PENDING
    assert fresh.status == TaskStatus.QUEUED


def test_dry_run_changes_nothing() -> None:
    task = _failed("http://e.x/a")

    output = run_command("requeue", "--dry-run").stdout

    assert f"would requeue #{task.pk} (failed)" in output
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED


def test_many_tasks_show_progress() -> None:
    tasks = services.task_create_batch(items=[{"url": f"http://e.x/{i}"} for i in range(120)])
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(status=TaskStatus.FAILED)

    output = run_command("requeue").stdout

    assert "requeued: 120/120" in output
