"""Submit→download-start latency on an idle local cluster.

Starts a real dispatcher (SQLite, in-memory channel layer unless REDIS_URL/DATABASE_URL are set),
two agents with their own aria2c, and a Range HTTP server on 127.0.0.1. Submits tasks one at a
time through the public API (each after the previous one completed, so the cluster is idle) and
measures, per task:

- submit→source: from just before the POST is sent to the first HTTP request the source server
  receives for that file (the download really starting), both read from this machine's clock;
- submit→started: from the POST to the dispatcher recording the agent's "started" report.

Usage: python -m bench.dispatch_latency [--tasks 50] [--size 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests.support.e2e import running_cluster


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--size", type=int, default=100_000, help="bytes per file")
    args = parser.parse_args()
    to_source: list[float] = []
    to_started: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp)) as cluster:
        time.sleep(2)  # let the agents' first heartbeats and polls settle: measure idle state
        for index in range(args.tasks):
            name = f"lat-{index}.bin"
            url = cluster.add_file(name, args.size)
            submitted = time.time()
            task_id = cluster.api.post("/api/tasks", {"url": url})["id"]
            task = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=30)
            assert task["status"] == "completed", task
            first = cluster.server.first_request_at(name)
            assert first is not None
            to_source.append(first - submitted)
            started = datetime.fromisoformat(task["started_at"].replace("Z", "+00:00"))
            to_started.append(started.timestamp() - submitted)
    print(f"tasks: {args.tasks} x {args.size} bytes, 2 workers, idle cluster")
    print(f"submit -> first request at the source: {_ms(to_source)}")
    print(f"submit -> dispatcher records 'started': {_ms(to_started)}")


if __name__ == "__main__":
    main()
