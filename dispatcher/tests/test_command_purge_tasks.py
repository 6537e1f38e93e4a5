"""`purge_tasks` and `services.task_purge`: old finished tasks go, everything else stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from dispatcher import services
from dispatcher.management.commands.purge_tasks import parse_duration
from dispatcher.models import Task, TaskEvent, TaskStatus
from dispatcher.tests.commands import run_command

pytestmark = pytest.mark.django_db


def _task(status: str, age_days: float) -> Task:
    task = services.task_create(url="http://e.x/f")
    finished = timezone.now() - timedelta(days=age_days)
    Task.objects.filter(pk=task.pk).update(status=status, finished_at=finished)
    return task


def test_old_finished_tasks_and_their_events_are_deleted() -> None:
    old = [_task(s, 40) for s in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)]
    recent = _task(TaskStatus.COMPLETED, 5)

    output = run_command("purge_tasks", "--older-than", "30d").stdout

    assert "Deleted 3 task(s)" in output
    assert list(Task.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not TaskEvent.objects.filter(task_id__in=[t.pk for t in old]).exists()


def test_only_the_given_statuses_are_purged() -> None:
    completed = _task(TaskStatus.COMPLETED, 40)
    failed = _task(TaskStatus.FAILED, 40)

    run_command("purge_tasks", "--older-than", "30d", "--status", "failed")

    assert list(Task.objects.values_list("pk", flat=True)) == [completed.pk]
    assert not Task.objects.filter(pk=failed.pk).exists()


def test_unfinished_tasks_are_never_purged() -> None:
    _task(TaskStatus.PENDING, 40)

    with pytest.raises(CommandError, match="only completed, failed, canceled"):
        run_command("purge_tasks", "--older-than", "1d", "--status", "pending")
    assert Task.objects.count() == 1


def test_dry_run_counts_and_deletes_nothing() -> None:
    _task(TaskStatus.COMPLETED, 40)

    output = run_command("purge_tasks", "--older-than", "30d", "--dry-run").stdout

    assert "1 task(s) would be deleted." in output
    assert Task.objects.count() == 1


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(CommandError, match="not a duration"):
        run_command("purge_tasks", "--older-than", "soon")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2592000), ("12h", 43200), ("90m", 5400), ("45", 45)]
)
def test_durations_read_like_the_docs(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_purge_runs_in_batches_and_reports_progress() -> None:
    for _ in range(5):
        _task(TaskStatus.COMPLETED, 40)
    seen: list[int] = []

    deleted = services.task_purge(
        statuses=["completed"],
        older_than=timezone.now() - timedelta(days=1),
        batch_size=2,
        on_progress=seen.append,
    )

    assert deleted == 5
    assert seen == [2, 4, 5]


def test_purge_refuses_an_empty_status_list() -> None:
    with pytest.raises(ValidationError):
        services.task_purge(statuses=[], older_than=timezone.now())
