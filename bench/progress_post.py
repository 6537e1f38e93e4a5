"""Cost of one agent progress post, in process: the dispatcher's work without the network.

A diagnostic behind B4 (docs/benchmarks.md "Optimisations"): on a scratch database (PostgreSQL
by default, dropped afterwards; ``--database sqlite`` for a temporary SQLite file) it registers
one worker, leases it 10 tasks, then posts ``/api/agent/v1/progress`` for all 10 through
Django's test client (full middleware, DRF, authentication, the transaction) N times and prints
the mean wall time per post. Run it alone: it measures CPU, so other load skews it.

Usage: python -m bench.progress_post [--posts 300] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import ROOT, postgres_database


@contextmanager
def _database(kind: str) -> Iterator[None]:
    if kind == "postgresql":
        with postgres_database() as url:
            os.environ["DATABASE_URL"] = url
            yield
        return
    os.environ.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "dispatcher.json"
        database = {"database": {"type": "sqlite", "path": f"{tmp}/db.sqlite3"}}
        config.write_text(json.dumps(database))
        os.environ["ARIACLUSTER_CONFIG"] = str(config)
        yield


def measure(posts: int) -> float:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ariacluster.settings")
    os.environ["ARIACLUSTER_LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from dispatcher import services
    from dispatcher.models import Task
    from dispatcher.placement import task_assign_pending
    from workers_app.services import worker_register

    call_command("migrate", verbosity=0)
    registration = worker_register(name="w1", hostname="h", max_tasks=10, free_disk=10**12)
    for i in range(10):
        services.task_create(url=f"http://127.0.0.1:9/{i}.bin")
    task_assign_pending()
    tasks = list(Task.objects.filter(worker=registration.worker))
    assert len(tasks) == 10, "the worker should hold 10 tasks"
    client = Client(SERVER_NAME="127.0.0.1")

    def post(n: int) -> None:
        body: dict[str, Any] = {
            "tasks": [
                {
                    "task_id": t.pk,
                    "epoch": t.epoch,
                    "status": "active",
                    "total_length": 10**9,
                    "completed_length": n * 1000,
                    "download_speed": 10**6,
                    "connections": 1,
                }
                for t in tasks
            ]
        }
        answer = client.post(
            "/api/agent/v1/progress",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {registration.token}",
        )
        assert answer.status_code == 200 and answer.json()["stale"] == [], answer.content

    for n in range(20):  # warm-up
        post(n)
    began = time.perf_counter()
    for n in range(posts):
        post(n)
    per_post = (time.perf_counter() - began) / posts
    done = Task.objects.get(pk=tasks[0].pk).completed_length
    assert done == (posts - 1) * 1000, f"the last post did not land: {done}"
    return per_post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    with _database(args.database):
        per_post = measure(args.posts)
    print(
        f"{args.database}: {per_post * 1000:.2f} ms per 10-task progress post ({args.posts} posts)"
    )


if __name__ == "__main__":
    main()
