"""Take a worker out of rotation: it finishes what it holds and gets nothing new."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dispatcher.models import LEASED_STATUSES
from workers_app.models import Worker
from workers_app.services import worker_set_draining


def worker_by_name_or_id(value: str) -> Worker:
    """The worker called `value`, or with id `value`; CommandError if there is none."""
    worker = Worker.objects.filter(name=value).first()
    if worker is None and value.isdigit():
        worker = Worker.objects.filter(pk=int(value)).first()
    if worker is None:
        raise CommandError(f"no worker named {value!r}")
    return worker


class Command(BaseCommand):
    help = "Drain a worker (by name or id): no new tasks; running ones finish."
    draining = True

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("worker", nargs="+", help="Worker name or id.")

    def handle(self, *args: Any, **options: Any) -> None:
        workers = [worker_by_name_or_id(value) for value in options["worker"]]
        for worker in workers:
            worker_set_draining(worker=worker, draining=self.draining)
            held = worker.tasks.filter(status__in=LEASED_STATUSES).count()
            if self.draining:
                self.stdout.write(f"Worker {worker.name} is draining ({held} task(s) still held).")
            else:
                self.stdout.write(f"Worker {worker.name} takes new tasks again.")
