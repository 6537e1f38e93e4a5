"""B5 — the queue at 100,000 tasks, on SQLite and on PostgreSQL.

For each database: starts a dispatcher with no agents, enqueues 100,000 tasks through
``POST /api/v1/tasks/batch/`` (1,000 per call; the enqueue rate), times 200 single
``POST /api/v1/tasks/`` (p50), then with the full queue reads the task list API (first page,
a status filter, the middle page) and ``/api/v1/status/`` 100 times each (p95). Placement: a Django
script in a separate process (bench/_placement.py) registers 500 live workers × 10 slots and
times ``dispatcher.placement.task_assign_pending`` placing 5,000 tasks. No downloads.

Targets: batch enqueue ≥ 5,000 tasks/s; single create p50 ≤ 10 ms; placement ≥ 500 tasks/s
(PostgreSQL), ≥ 200/s (SQLite); task list page p95 ≤ 50 ms; /api/status p95 ≤ 20 ms.

Usage: python -m bench.b5_queue [--small] [--tasks 100000] [--database sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.b4_control_plane import fill_queue
from bench.common import ROOT, Run, cluster, dispatcher_pid, ms_summary, rss_bytes, table


def timed(api: Any, path: str, count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        began = time.monotonic()
        api.get(path)
        samples.append(time.monotonic() - began)
    return ms_summary(samples)


ANALYZE = "from django.db import connection; connection.cursor().execute('ANALYZE')"


def one_database(database: str, tasks: int, workers: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), database=database, workers=0) as running,
    ):
        api = running.api
        enqueue = fill_queue(api, tasks)
        print(f"{database}: enqueued {enqueue}")
        if database == "postgresql":
            # The planner statistics autovacuum gathers within a minute of such an insert; read
            # right away, PostgreSQL still believes the table holds a few dozen rows.
            running.local.manage("shell", "-c", ANALYZE)
        singles = []
        for i in range(200):
            began = time.monotonic()
            api.post("/api/v1/tasks/", {"url": f"http://127.0.0.1:9/single/{i}.bin"})
            singles.append(time.monotonic() - began)
        reads = {
            "list_first_page": timed(api, "/api/v1/tasks/", 100),
            "list_status_pending": timed(api, "/api/v1/tasks/?status=pending", 100),
            "list_deep_page": timed(api, f"/api/v1/tasks/?page={max(1, tasks // 100)}", 50),
            "status": timed(api, "/api/v1/status/", 100),
        }
        rss = rss_bytes(dispatcher_pid(running))
        # Stop the dispatcher: its 1 s maintenance pass would place tasks on the same workers.
        running.local.stop()
        placed = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "_placement.py"), str(workers), "10"],
            cwd=ROOT,
            env=running.local.child_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if placed.returncode != 0:
            raise RuntimeError(placed.stderr[-3000:])
        placement = json.loads(placed.stdout.strip().splitlines()[-1])
    return {
        "enqueue": enqueue,
        "single_create": ms_summary(singles),
        **reads,
        "placement": placement,
        "dispatcher_rss_mb_at_queue": round(rss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5,000 tasks, 100 workers")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--database", default="sqlite,postgresql")
    args = parser.parse_args()
    tasks = args.tasks or (5_000 if args.small else 100_000)
    workers = 100 if args.small else 500
    run = Run("b5_queue", args.small)
    figures: dict[str, Any] = {"tasks": tasks, "placement_workers": workers}
    rows = []
    for database in args.database.split(","):
        got = one_database(database, tasks, workers)
        figures[database] = got
        rows.append(
            [
                database,
                got["enqueue"]["tasks_per_s"],
                got["single_create"]["p50_ms"],
                got["placement"]["tasks_per_s"],
                got["list_first_page"]["p95_ms"],
                got["list_status_pending"]["p95_ms"],
                got["list_deep_page"]["p95_ms"],
                got["status"]["p95_ms"],
                got["dispatcher_rss_mb_at_queue"],
            ]
        )
    print(f"\nB5: queue of {tasks} tasks")
    table(
        [
            "database",
            "enqueue/s",
            "create p50 ms",
            "placement/s",
            "list p95 ms",
            "list ?status p95",
            "list mid page p95",
            "status p95 ms",
            "RSS MB",
        ],
        rows,
    )
    print("targets: >=5000/s, <=10 ms, >=500/s PG >=200/s SQLite, <=50 ms, <=20 ms")
    run.write(figures)


if __name__ == "__main__":
    main()
