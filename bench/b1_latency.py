"""B1 — dispatch latency: submit → aria2 download active, and → completed, on an idle cluster.

Starts a real dispatcher (SQLite and the in-memory channel layer by default;
``--database postgresql`` for a scratch PostgreSQL database, REDIS_URL honoured), two agents with
their own aria2c and the Range server (tests.support.rangeserver, which records the first request
for each file). Submits one task at a time through ``POST /api/v1/tasks/``, each after the previous
one completed (so the cluster is idle), and measures per task, all on this machine's clock:

- submit → active: from just before the POST to the first HTTP request the source server receives
  for that file (aria2 really downloading);
- submit → started: to the ``started_at`` the dispatcher records from the agent's report;
- submit → completed: to the ``finished_at`` the dispatcher records when the agent reports the
  finished, hashed file.

Every downloaded file is verified by sha256 on the worker's disk.
Targets: p50 ≤ 100 ms and p95 ≤ 250 ms to active; p50 ≤ 300 ms to completed.

Usage: python -m bench.b1_latency [--small] [--tasks 50] [--size 1000000] [--database sqlite]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import Run, cluster, ms_summary, parse_ts, table


def measure(tasks: int, size: int, database: str) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {"active": [], "started": [], "completed": []}
    with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp), database=database) as running:
        time.sleep(2)  # let the agents' first heartbeats settle: measure the idle state
        for index in range(tasks):
            name = f"lat-{index}.bin"
            url = running.add_file(name, size)
            submitted = time.time()
            task_id = running.api.post("/api/v1/tasks/", {"url": url})["id"]
            task = running.api.wait_for(task_id, {"completed", "failed"}, timeout=30)
            running.assert_downloaded(task, name)  # sha256 of the bytes on the worker's disk
            first = running.server.first_request_at(name)
            assert first is not None
            series["active"].append(first - submitted)
            series["started"].append(parse_ts(task["started_at"]) - submitted)
            series["completed"].append(parse_ts(task["finished_at"]) - submitted)
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10 samples")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--size", type=int, default=1_000_000, help="bytes per file")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    tasks = args.tasks or (10 if args.small else 50)
    run = Run(f"b1_latency-{args.database}", args.small)
    series = measure(tasks, args.size, args.database)
    figures = {name: ms_summary(values) for name, values in series.items()}
    print(f"\nB1: {tasks} tasks x {args.size} bytes, 2 workers, idle cluster, {args.database}")
    table(
        ["interval", "p50 ms", "p95 ms", "max ms", "target"],
        [
            ["submit -> active (source)", *_row(figures["active"]), "p50<=100, p95<=250"],
            ["submit -> started (dispatcher)", *_row(figures["started"]), "-"],
            ["submit -> completed", *_row(figures["completed"]), "p50<=300"],
        ],
    )
    met = (
        figures["active"]["p50_ms"] <= 100
        and figures["active"]["p95_ms"] <= 250
        and figures["completed"]["p50_ms"] <= 300
    )
    run.write(
        {
            "tasks": tasks,
            "size": args.size,
            "database": args.database,
            "workers": 2,
            "verified_sha256": tasks,
            **figures,
            "target_met": met,
        }
    )


def _row(figure: dict[str, float]) -> list[float]:
    return [figure["p50_ms"], figure["p95_ms"], figure["max_ms"]]


if __name__ == "__main__":
    main()
