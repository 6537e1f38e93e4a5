"""Delete workers that have been offline longer than a given age."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dispatcher.management.commands.purge_tasks import parse_duration
from workers_app.models import Worker, WorkerStatus
from workers_app.services import WorkerStateError, worker_remove


class Command(BaseCommand):
    help = (
        "Remove workers offline for longer than --older-than (default: the config's "
        "worker_management.offline_threshold). Workers still holding tasks are kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", help="Offline for at least this long: 1h, 7d, ...")
        parser.add_argument("--dry-run", action="store_true", help="Only list them.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"]:
            try:
                age = parse_duration(options["older_than"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        else:
            age = timedelta(seconds=settings.ARIACLUSTER.worker_management.offline_threshold)
        cutoff = timezone.now() - age
        workers = list(
            Worker.objects.filter(status=WorkerStatus.OFFLINE, status_changed_at__lt=cutoff)
        )
        removed = 0
        for worker in workers:
            if options["dry_run"]:
                self.stdout.write(
                    f"would remove {worker.name} (offline since "
                    f"{worker.status_changed_at:%Y-%m-%d %H:%M})"
                )
                continue
            try:
                worker_remove(worker=worker)
            except WorkerStateError as exc:
                self.stderr.write(f"kept {worker.name}: {exc}")
                continue
            removed += 1
            self.stdout.write(f"removed {worker.name}")
        verb = "would be removed" if options["dry_run"] else "removed"
        count = len(workers) if options["dry_run"] else removed
        self.stdout.write(f"{count} worker(s) {verb}.")
