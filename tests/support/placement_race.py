"""Drive `task_assign_pending` from several processes against one real database.

Used by ``tests/test_placement_atomicity.py``; each mode runs in its own process, configured
only by the environment (``ARIACLUSTER_CONFIG`` for a SQLite file, ``DATABASE_URL`` for
PostgreSQL), and prints one JSON line on stdout:

* ``setup --workers N --max-tasks M --tasks T``: migrate, create live workers and pending tasks;
* ``run --complete K --deadline S``: loop placing tasks (and completing up to K queued tasks per
  loop through `leases.task_report_completed`, which frees slots for the other processes) until
  nothing is pending; after every pass, sample the active count per worker;
* ``check``: the invariants, computed from the task and event tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ariacluster.settings")
    os.environ.setdefault("ARIACLUSTER_MAINTENANCE", "0")
    import django

    django.setup()


def setup(workers: int, max_tasks: int, tasks: int) -> dict[str, Any]:
    from django.core.management import call_command
    from django.utils import timezone

    from dispatcher.models import Task, TaskEvent, TaskEventKind
    from workers_app.models import Worker

    call_command("migrate", verbosity=0)
    now = timezone.now()
    Worker.objects.bulk_create(
        Worker(name=f"w{i:03d}", max_tasks=max_tasks, last_heartbeat=now) for i in range(workers)
    )
    rows = Task.objects.bulk_create(
        (
            Task(
                uris=[f"http://127.0.0.1:9/{i}.bin"], name=f"{i}.bin", priority=random.randint(1, 4)
            )
            for i in range(tasks)
        ),
        batch_size=1000,
    )
    TaskEvent.objects.bulk_create(
        (TaskEvent(task=t, kind=TaskEventKind.CREATED) for t in rows), batch_size=1000
    )
    return {"workers": workers, "tasks": Task.objects.count()}


def _active_per_worker() -> dict[int, int]:
    from dispatcher.selectors import worker_slots_used
    from workers_app.models import Worker

    return worker_slots_used(list(Worker.objects.values_list("pk", flat=True)))


def run(complete: int, deadline: float) -> dict[str, Any]:
    from django.db import connection

    from dispatcher import leases
    from dispatcher.models import ACTIVE_STATUSES, Task, TaskStatus
    from dispatcher.placement import task_assign_pending
    from workers_app.models import Worker

    limits = dict(Worker.objects.values_list("pk", "max_tasks"))
    workers = {w.pk: w for w in Worker.objects.all()}
    stop_at = time.monotonic() + deadline
    placed = completed = stale = passes = 0
    over: list[dict[str, int]] = []
    while True:
        passes += 1
        placed += task_assign_pending()
        for worker_id, active in _active_per_worker().items():
            if active > limits[worker_id]:
                over.append({"worker": worker_id, "active": active, "max": limits[worker_id]})
        if complete:
            queued = list(
                Task.objects.filter(status__in=ACTIVE_STATUSES).values_list(
                    "pk", "worker_id", "epoch"
                )[: complete * 4]
            )
            for task_id, worker_id, epoch in random.sample(queued, min(complete, len(queued))):
                try:
                    leases.task_report_completed(
                        worker=workers[worker_id], task_id=task_id, epoch=epoch, files=[]
                    )
                    completed += 1
                except leases.StaleLease:
                    stale += 1
        if not Task.objects.filter(status=TaskStatus.PENDING).exists():
            break
        if time.monotonic() > stop_at:
            connection.close()
            return {"error": "deadline passed", "placed": placed, "passes": passes}
    connection.close()
    return {
        "placed": placed,
        "completed": completed,
        "stale": stale,
        "passes": passes,
        "over_max": over[:10],
    }


def check() -> dict[str, Any]:
    from dispatcher.models import ACTIVE_STATUSES, Task, TaskEvent
    from workers_app.models import Worker

    limits = dict(Worker.objects.values_list("pk", "max_tasks"))
    statuses = Counter(Task.objects.values_list("status", flat=True))
    assigned = Counter(TaskEvent.objects.filter(kind="assigned").values_list("task_id", flat=True))
    completed = Counter(
        TaskEvent.objects.filter(kind="completed").values_list("task_id", flat=True)
    )
    task_ids = list(Task.objects.values_list("pk", flat=True))
    # Replay in id order: an ASSIGNED row is written after its transaction counted the slots,
    # so a COMPLETED that freed a slot it used always has a smaller id.
    load: dict[int, int] = defaultdict(int)
    replay_over: list[dict[str, int]] = []
    for kind, worker_id in (
        TaskEvent.objects.filter(kind__in=["assigned", "completed"])
        .order_by("id")
        .values_list("kind", "worker_id")
    ):
        load[worker_id] += 1 if kind == "assigned" else -1
        if load[worker_id] > limits[worker_id]:
            replay_over.append({"worker": worker_id, "load": load[worker_id]})
    final_active = Counter(
        Task.objects.filter(status__in=ACTIVE_STATUSES).values_list("worker_id", flat=True)
    )
    return {
        "tasks": len(task_ids),
        "statuses": dict(statuses),
        "tasks_not_assigned_once": sum(1 for t in task_ids if assigned[t] != 1),
        "assigned_events_not_epoch_1": TaskEvent.objects.filter(kind="assigned")
        .exclude(epoch=1)
        .count(),
        "tasks_not_epoch_1": Task.objects.exclude(epoch=1).count(),
        "tasks_completed_twice": sum(1 for n in completed.values() if n > 1),
        "completed_events": sum(completed.values()),
        "replay_over_max": replay_over[:10],
        "final_over_max": {w: n for w, n in final_active.items() if n > limits[w]},
        "assigned_per_worker_max": max(
            Counter(
                TaskEvent.objects.filter(kind="assigned").values_list("worker_id", flat=True)
            ).values(),
            default=0,
        ),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--workers", type=int, required=True)
    s.add_argument("--max-tasks", type=int, required=True)
    s.add_argument("--tasks", type=int, required=True)
    r = sub.add_parser("run")
    r.add_argument("--complete", type=int, default=0)
    r.add_argument("--deadline", type=float, default=50.0)
    sub.add_parser("check")
    args = parser.parse_args(argv)
    _setup_django()
    if args.mode == "setup":
        result = setup(args.workers, args.max_tasks, args.tasks)
    elif args.mode == "run":
        result = run(args.complete, args.deadline)
    else:
        result = check()
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
