"""`prune_workers`: long-offline workers are removed; recent or task-holding ones are kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from dispatcher import services
from dispatcher.models import Task, TaskStatus
from dispatcher.tests.commands import run_command
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


def _offline(worker: Worker, hours: float) -> None:
    since = timezone.now() - timedelta(hours=hours)
    Worker.objects.filter(pk=worker.pk).update(status=WorkerStatus.OFFLINE, status_changed_at=since)


def test_workers_offline_longer_than_the_age_are_removed(
    register_worker: Callable[..., Registration],
) -> None:
    _offline(register_worker("old").worker, 48)
    _offline(register_worker("recent").worker, 1)
    register_worker("alive")

    output = run_command("prune_workers", "--older-than", "1d").stdout

    assert "removed old" in output
    assert "1 worker(s) removed." in output
    assert sorted(Worker.objects.values_list("name", flat=True)) == ["alive", "recent"]


def test_an_offline_worker_still_holding_a_task_is_kept(
    register_worker: Callable[..., Registration],
) -> None:
    worker = register_worker("holder").worker
    task = services.task_create(url="http://e.x/a")
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.PAUSED, worker=worker)
    _offline(worker, 48)

    result = run_command("prune_workers", "--older-than", "1d")

    assert "kept holder: worker holder still holds tasks" in result.stderr
    assert Worker.objects.filter(name="holder").exists()


def test_the_default_age_is_the_configured_offline_threshold(
    register_worker: Callable[..., Registration], configure: Callable[..., None]
) -> None:
    configure(worker_management={"offline_threshold": 7200.0})
    _offline(register_worker("three-hours").worker, 3)
    _offline(register_worker("one-hour").worker, 1)

    run_command("prune_workers")

    assert list(Worker.objects.values_list("name", flat=True)) == ["one-hour"]


def test_dry_run_removes_nothing(register_worker: Callable[..., Registration]) -> None:
    _offline(register_worker("old").worker, 48)

    output = run_command("prune_workers", "--older-than", "1d", "--dry-run").stdout

    assert "would remove old" in output
    assert Worker.objects.count() == 1
