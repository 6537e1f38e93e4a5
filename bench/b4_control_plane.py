"""B4 — control plane: a fleet of simulated agents (bench/simagent.py) against one dispatcher.

Starts one dispatcher process (``manage.py serve``) on a scratch PostgreSQL database with the
in-memory channel layer and the default heartbeat (10 s / 30 s), fills the queue with pending
tasks through the batch API (100,000 by default), then ramps a fleet of simulated workers (10
slots each) that speak the real protocol over HTTP: register with a join key, heartbeat, one
progress batch per second for their 10 active tasks, one completion per heartbeat (the
dispatcher places a new task, the next heartbeat brings it, ``started`` is reported). For each
fleet size, after a warm-up, it records the latency of every call, how far workers fall behind
their 1 s schedule (first vs second half: a growing backlog shows there), the dispatcher's CPU
(from /proc/<pid>/stat) and RSS. No aria2c, no downloads: nothing to verify by sha256.

Targets: 500 workers × 10 tasks: progress p99 ≤ 200 ms, no growing backlog, dispatcher ≤ 1 core;
the largest fleet with p99 ≤ 500 ms.

Usage: python -m bench.b4_control_plane [--small] [--fleet 50,100,200,500] [--seconds 20]
       [--queue 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CpuMeter,
    Profiler,
    Run,
    cluster,
    cpu_seconds,
    dispatcher_pid,
    ms_summary,
    pct,
    rss_bytes,
    table,
)
from bench.simagent import SimWorker, Stats

DEFAULT_HEARTBEAT = {"worker_management": {"heartbeat_interval": 10, "heartbeat_timeout": 30}}


def fill_queue(api: Any, count: int) -> dict[str, float]:
    """``count`` pending tasks through POST /api/v1/tasks/batch/ (1,000 per call)."""
    began = time.monotonic()
    made = 0
    while made < count:
        n = min(1000, count - made)
        api.post(
            "/api/v1/tasks/batch/",
            {"tasks": [{"url": f"http://127.0.0.1:9/q/{made + i}.bin"} for i in range(n)]},
        )
        made += n
    seconds = time.monotonic() - began
    return {"tasks": count, "seconds": round(seconds, 2), "tasks_per_s": round(count / seconds)}


class Fleet:
    """Simulated workers on an asyncio loop in a background thread."""

    def __init__(self, port: int, join_key: str) -> None:
        self.port = port
        self.join_key = join_key
        self.stats = Stats()
        self.workers: list[SimWorker] = []
        self.futures: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def grow(self, size: int, *, complete: bool = True, max_tasks: int = 10) -> None:
        while len(self.workers) < size:
            worker = SimWorker(
                f"sim{len(self.workers) + 1}", self.port, self.join_key, self.stats, max_tasks
            )
            self.workers.append(worker)
            self.futures.append(
                asyncio.run_coroutine_threadsafe(worker.run(complete=complete), self.loop)
            )

    def crashed(self) -> list[str]:
        return [repr(f.exception()) for f in self.futures if f.done() and f.exception()]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stopped = True
        time.sleep(1.5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def measure_stage(
    fleet: Fleet, size: int, seconds: float, warmup: float, pid: int, profile: str | None
) -> dict[str, Any]:
    fleet.grow(size)
    time.sleep(warmup)
    stats = fleet.stats
    stats.latency, stats.lag, stats.errors = {}, [], {}
    stats.recording = True
    meter = CpuMeter(pid)
    me0, wall0 = cpu_seconds(_self_pid()), time.monotonic()
    profiler = Profiler(pid, profile) if profile else None
    rss = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        time.sleep(1)
        rss = max(rss, rss_bytes(pid))
    stats.recording = False
    cores = meter.cores()
    generator = round((cpu_seconds(_self_pid()) - me0) / (time.monotonic() - wall0), 3)
    hot = profiler.stop() if profiler else []
    middle = began + seconds / 2
    first = [lag for when, lag in stats.lag if when < middle]
    second = [lag for when, lag in stats.lag if when >= middle]
    progress = stats.latency.get("progress", [])
    result = {
        "workers": size,
        "active_tasks": sum(len(w.tasks) for w in fleet.workers),
        "seconds": seconds,
        "progress_posts_per_s": round(len(progress) / seconds, 1),
        "offered_progress_per_s": size,
        "latency": {kind: ms_summary(values) for kind, values in stats.latency.items()},
        "late_posts": len(stats.lag),
        "lag_p99_first_half_ms": round(pct(first, 99) * 1000, 1) if first else 0.0,
        "lag_p99_second_half_ms": round(pct(second, 99) * 1000, 1) if second else 0.0,
        "errors": dict(stats.errors),
        "dispatcher_cores": cores,
        "dispatcher_rss_mb": round(rss / 2**20, 1),
        "load_generator_cores": generator,
    }
    crashed = fleet.crashed()
    if crashed:
        result["crashed_workers"] = len(crashed)
        print(f"{len(crashed)} simulated workers crashed, e.g. {crashed[0]}")
    if hot:
        result["profile_top"] = hot[:20]
    return result


def _self_pid() -> int:
    import os

    return os.getpid()


def run_fleet(
    *,
    fleet_sizes: list[int],
    seconds: float,
    warmup: float,
    queue: int,
    small: bool,
    profile_at: int | None = None,
    name: str = "b4",
) -> dict[str, Any]:
    """Start the dispatcher on PostgreSQL, fill the queue, ramp the fleet; the figures."""
    stages: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), database="postgresql", workers=0, config=DEFAULT_HEARTBEAT) as running,
    ):
        pid = dispatcher_pid(running)
        filled = fill_queue(running.api, queue)
        print(f"queue filled: {filled}")
        idle_rss = rss_bytes(pid)
        fleet = Fleet(running.local.port, running.join_key)
        try:
            for size in fleet_sizes:
                tag = f"{name}-{size}-workers" if profile_at == size else None
                stage = measure_stage(fleet, size, seconds, warmup, pid, tag)
                stages.append(stage)
                p = stage["latency"].get("progress", {})
                print(
                    f"{size} workers: progress p50 {p.get('p50_ms')} p99 {p.get('p99_ms')} ms, "
                    f"{stage['progress_posts_per_s']}/{size} posts/s, "
                    f"dispatcher {stage['dispatcher_cores']} cores {stage['dispatcher_rss_mb']} MB"
                )
        finally:
            fleet.stop()
        status = running.api.get("/api/v1/status/")
    return {
        "queue_fill": filled,
        "dispatcher_idle_rss_mb": round(idle_rss / 2**20, 1),
        "stages": stages,
        "final_task_counts": status["tasks"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fleets 10, 50; 8 s; 5,000 queued")
    parser.add_argument("--fleet", default=None, help="comma-separated fleet sizes")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per fleet")
    parser.add_argument("--queue", type=int, default=None, help="pending tasks before the ramp")
    parser.add_argument("--profile-at", type=int, default=None, help="py-spy at this fleet size")
    args = parser.parse_args()
    sizes = [
        int(x) for x in (args.fleet or ("10,50" if args.small else "50,100,200,500")).split(",")
    ]
    run = Run("b4_control_plane", args.small)
    figures = run_fleet(
        fleet_sizes=sizes,
        seconds=args.seconds or (8 if args.small else 20),
        warmup=4 if args.small else 12,
        queue=args.queue or (5_000 if args.small else 100_000),
        small=args.small,
        profile_at=args.profile_at,
    )
    rows = []
    passing = [0]
    for stage in figures["stages"]:
        p = stage["latency"].get("progress", {})
        if p and p["p99_ms"] <= 500:
            passing.append(stage["workers"])
        rows.append(
            [
                stage["workers"],
                stage["active_tasks"],
                f"{stage['progress_posts_per_s']}/{stage['offered_progress_per_s']}",
                p.get("p50_ms"),
                p.get("p99_ms"),
                f"{stage['lag_p99_first_half_ms']} -> {stage['lag_p99_second_half_ms']}",
                stage["dispatcher_cores"],
                stage["dispatcher_rss_mb"],
                sum(stage["errors"].values()),
            ]
        )
    print("\nB4: simulated agents, one dispatcher process, PostgreSQL")
    table(
        [
            "workers",
            "tasks",
            "progress/s",
            "p50 ms",
            "p99 ms",
            "lag p99 ms (1st->2nd half)",
            "dispatcher cores",
            "RSS MB",
            "errors",
        ],
        rows,
    )
    figures["largest_fleet_p99_le_500ms"] = max(passing)
    print(f"largest fleet with progress p99 <= 500 ms: {max(passing)}")
    run.write(figures)


if __name__ == "__main__":
    main()
