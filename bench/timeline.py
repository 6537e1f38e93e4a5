"""Per-task timeline of a batch of small downloads: where a task's time goes between phases.

Not one of the issue's rows: a diagnostic used for docs/benchmarks.md "Optimisations". Starts a
dispatcher (SQLite) and W agents with S slots each, serves N files of SIZE bytes from nginx,
submits them in one batch, waits, checks every file's sha256, and prints the throughput, the
medians of finished → next assigned, assigned → started and started → finished (from the
dispatcher's own timestamps), and the CPU each process used.

Usage: python -m bench.timeline [--tasks 40] [--workers 1] [--slots 1] [--size 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import (
    CpuMeter,
    all_tasks,
    cluster,
    dispatcher_pid,
    make_files,
    nginx,
    parse_ts,
    verify_files,
    wait_all_done,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()
    options = {f"w{i + 1}": {"max_tasks": args.slots} for i in range(args.workers)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), workers=args.workers, agent_options=options) as running,
    ):
        digests = make_files(running.server.root, "t", args.tasks, args.size)
        with nginx(running.server.root) as origin:
            meters = {"dispatcher": CpuMeter(dispatcher_pid(running))}
            meters.update({n: CpuMeter(p.pid) for n, p in running.local.agents.items()})
            began = time.time()
            created = running.api.post(
                "/api/v1/tasks/batch/", {"tasks": [{"url": f"{origin}/{n}"} for n in digests]}
            )["tasks"]
            wait_all_done(running.api, args.tasks, 600)
            cores = {name: meter.cores() for name, meter in meters.items()}
            names = {t["id"]: name for t, name in zip(created, digests, strict=True)}
            tasks = [t for t in all_tasks(running.api) if t["id"] in names]
            assert all(t["status"] == "completed" for t in tasks), "not every task completed"
            verify_files({names[t["id"]]: running.downloaded_path(t) for t in tasks}, digests)
    tasks.sort(key=lambda t: parse_ts(t["assigned_at"]))
    finished = [parse_ts(t["finished_at"]) for t in tasks]
    elapsed = max(finished) - began
    gaps: dict[str, list[float]] = {"finished -> next assigned": [], "assigned -> started": []}
    gaps["started -> finished"] = []
    previous = None
    for task in tasks:
        assigned, started = parse_ts(task["assigned_at"]), parse_ts(task["started_at"])
        if previous is not None:
            gaps["finished -> next assigned"].append(assigned - previous)
        gaps["assigned -> started"].append(started - assigned)
        gaps["started -> finished"].append(parse_ts(task["finished_at"]) - started)
        previous = parse_ts(task["finished_at"])
    print(
        f"{args.tasks} x {args.size} bytes over {args.workers} worker(s) x {args.slots} slot(s): "
        f"{elapsed:.2f} s, {args.tasks / elapsed:.1f} tasks/s, sha256 verified"
    )
    for name, values in gaps.items():
        if values:
            print(f"  {name}: p50 {statistics.median(values) * 1000:.1f} ms")
    print(f"  cores used: {cores}")
    print("  (with several slots, 'finished -> next assigned' mixes slots and can be negative)")


if __name__ == "__main__":
    main()
