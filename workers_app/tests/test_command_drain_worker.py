"""`drain_worker` / `undrain_worker`: placement skips a drained worker until it is undrained."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.management.base import CommandError

from dispatcher import services
from dispatcher.models import TaskStatus
from dispatcher.placement import task_assign_pending
from dispatcher.tests.commands import run_command
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


def test_a_drained_worker_gets_no_new_task_until_undrained(
    register_worker: Callable[..., Registration],
) -> None:
    worker = register_worker("worker1").worker
    output = run_command("drain_worker", "worker1").stdout
    assert "Worker worker1 is draining (0 task(s) still held)." in output

    task = services.task_create(url="http://e.x/a")
    task_assign_pending()
    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING

    output = run_command("undrain_worker", str(worker.pk)).stdout
    assert "Worker worker1 takes new tasks again." in output
    task_assign_pending()
    task.refresh_from_db()
    worker.refresh_from_db()
    assert (task.status, task.worker_id, worker.draining) == (TaskStatus.QUEUED, worker.pk, False)


def test_draining_reports_the_tasks_the_worker_still_holds(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("worker1")
    services.task_create(url="http://e.x/a")
    task_assign_pending()

    output = run_command("drain_worker", "worker1").stdout

    assert "(1 task(s) still held)" in output


def test_an_unknown_worker_is_an_error() -> None:
    with pytest.raises(CommandError, match="no worker named 'ghost'"):
        run_command("drain_worker", "ghost")
