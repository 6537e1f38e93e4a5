"""Queue tasks again: failed ones (the default), stale running ones, or chosen by id or filter.

Failed, canceled and delayed-pending tasks go through `services.task_retry` (a fresh start);
queued or downloading tasks through `services.task_requeue` (taken off their worker, new epoch).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet
from django.utils import timezone

from dispatcher.management.progress import Progress
from dispatcher.models import ACTIVE_STATUSES, Task, TaskStatus
from dispatcher.selectors import task_list
from dispatcher.services import TaskStateError, task_requeue, task_retry

RETRYABLE = (TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.PENDING)


class Command(BaseCommand):
    help = (
        "Queue tasks again. Without options: every failed task. --id for chosen tasks, "
        "--status/--worker/--tag/--kind to filter, --stale N for running tasks with no "
        "update for N seconds."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--id", type=int, action="append", dest="ids", help="Task id.")
        parser.add_argument("--status", help="Comma-separated statuses (default: failed).")
        parser.add_argument("--worker", help="Worker id or name.")
        parser.add_argument("--tag")
        parser.add_argument("--kind")
        parser.add_argument(
            "--stale", type=float, metavar="SECONDS", help="Queued/downloading, silent this long."
        )
        parser.add_argument("--dry-run", action="store_true", help="Only list what would move.")

    def _selected(self, options: dict[str, Any]) -> QuerySet[Task]:
        if options["ids"]:
            return Task.objects.filter(pk__in=options["ids"]).order_by("pk")
        status = options["status"]
        if options["stale"] is not None:
            status = status or ",".join(ACTIVE_STATUSES)
        qs = task_list(
            status=status or TaskStatus.FAILED,
            worker=options["worker"],
            tag=options["tag"],
            kind=options["kind"],
        ).order_by("pk")
        if options["stale"] is not None:
            cutoff = timezone.now() - timedelta(seconds=options["stale"])
            qs = qs.filter(status__in=ACTIVE_STATUSES, updated_at__lt=cutoff)
        return qs

    def handle(self, *args: Any, **options: Any) -> None:
        tasks = self._selected(options)
        if options["ids"]:
            missing = sorted(set(options["ids"]) - set(tasks.values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"no task with id {', '.join(map(str, missing))}")
        ids = list(tasks.values_list("pk", flat=True))
        if options["dry_run"]:
            for task in tasks:
                self.stdout.write(f"would requeue #{task.pk} ({task.status}) {task}")
            self.stdout.write(f"{len(ids)} task(s) would be queued again.")
            return
        progress = Progress(self.stdout, "requeued", len(ids))
        moved, refused = 0, []
        for task_id in ids:
            task = Task.objects.get(pk=task_id)
            try:
                if task.status in RETRYABLE:
                    task_retry(task=task)
                elif task.status in ACTIVE_STATUSES:
                    task_requeue(task=task)
                else:
                    raise TaskStateError(f"cannot requeue a task that is {task.status}")
                moved += 1
            except TaskStateError as exc:
                refused.append(f"#{task_id}: {exc}")
            progress.advance()
        progress.finish()
        for line in refused:
            self.stderr.write(line)
        self.stdout.write(f"{moved} task(s) queued again, {len(refused)} refused.")
        if refused and options["ids"]:
            raise CommandError(f"{len(refused)} task(s) could not be queued again")
