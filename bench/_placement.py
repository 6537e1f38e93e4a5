"""Placement rate, run by bench/b5_queue.py in the dispatcher's environment (its config and
database): registers N live workers with S slots each, then times
``dispatcher.placement.task_assign_pending`` over the pending queue. Prints one JSON line.

Usage: python bench/_placement.py WORKERS SLOTS
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ariacluster.settings")

import django

django.setup()

from django.utils import timezone  # noqa: E402

from dispatcher.placement import task_assign_pending  # noqa: E402
from workers_app.models import Worker  # noqa: E402


def main() -> None:
    workers, slots = int(sys.argv[1]), int(sys.argv[2])
    now = timezone.now()
    Worker.objects.bulk_create(
        Worker(name=f"place{i}", max_tasks=slots, status="online", last_heartbeat=now)
        for i in range(workers)
    )
    began = time.monotonic()
    placed = task_assign_pending()
    seconds = time.monotonic() - began
    print(
        json.dumps(
            {
                "workers": workers,
                "slots": workers * slots,
                "placed": placed,
                "seconds": round(seconds, 3),
                "tasks_per_s": round(placed / seconds, 1) if seconds else None,
            }
        )
    )


if __name__ == "__main__":
    main()
