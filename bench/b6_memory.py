"""B6 — memory: agent RSS with 20 active downloads; dispatcher RSS at 100,000 tasks under load.

Agent: a dispatcher (SQLite), one agent with 20 slots and its aria2c, the Python Range server
throttling every response (200 kB/s) so 20 downloads stay active; VmRSS of the agent process
(and, separately, of its aria2c) sampled every 0.5 s while all 20 run; then every file is
verified by sha256. Dispatcher: the B4 load (bench/b4_control_plane.py: PostgreSQL, 100,000
queued tasks, 200 simulated workers × 10 active tasks, progress every second); its peak VmRSS.

Targets: agent RSS ≤ 60 MB with 20 active downloads; dispatcher RSS ≤ 200 MB at 100,000 tasks.

Usage: python -m bench.b6_memory [--small]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.b4_control_plane import run_fleet
from bench.common import Run, children, cluster, rss_bytes, table

MB = 2**20


def agent_memory(count: int, size: int, throttle: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), workers=1, agent_options={"w1": {"max_tasks": count}}) as running,
    ):
        names = [f"m{i}.bin" for i in range(count)]
        urls = [running.add_file(n, size) + f"?throttle={throttle}" for n in names]
        created = running.api.post("/api/v1/tasks/batch/", {"tasks": [{"url": u} for u in urls]})[
            "tasks"
        ]
        pid = running.local.agents["w1"].pid
        idle = rss_bytes(pid)
        peak_agent = peak_aria2 = 0
        active_samples = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            active = running.api.get("/api/v1/status/")["tasks"].get("downloading", 0)
            if active == count:
                active_samples += 1
                peak_agent = max(peak_agent, rss_bytes(pid))
                peak_aria2 = max(peak_aria2, sum(rss_bytes(c) for c in children(pid)))
            elif active_samples:
                break
            time.sleep(0.5)
        assert active_samples, "never saw every download active at once"
        for task, name in zip(created, names, strict=True):
            done = running.api.wait_for(task["id"], {"completed", "failed"}, timeout=600)
            running.assert_downloaded(done, name)
    return {
        "downloads": count,
        "size": size,
        "throttle": throttle,
        "agent_idle_rss_mb": round(idle / MB, 1),
        "agent_peak_rss_mb": round(peak_agent / MB, 1),
        "aria2c_peak_rss_mb": round(peak_aria2 / MB, 1),
        "samples_with_all_active": active_samples,
        "verified_sha256": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="dispatcher: 5,000 tasks, 20 workers")
    args = parser.parse_args()
    run = Run("b6_memory", args.small)
    agent = agent_memory(20, 2_000_000 if args.small else 4_000_000, 200_000)
    load = run_fleet(
        fleet_sizes=[20 if args.small else 200],
        seconds=8 if args.small else 20,
        warmup=4 if args.small else 12,
        queue=5_000 if args.small else 100_000,
        small=args.small,
        name="b6",
    )
    stage = load["stages"][0]
    figures = {
        "agent": agent,
        "dispatcher": {
            "queued_tasks": load["queue_fill"]["tasks"],
            "workers": stage["workers"],
            "active_tasks": stage["active_tasks"],
            "idle_rss_mb": load["dispatcher_idle_rss_mb"],
            "peak_rss_mb_under_load": stage["dispatcher_rss_mb"],
            "progress_latency": stage["latency"].get("progress"),
        },
    }
    figures["target_met"] = agent["agent_peak_rss_mb"] <= 60 and stage["dispatcher_rss_mb"] <= 200
    print("\nB6: memory")
    table(
        ["process", "RSS MB", "target"],
        [
            ["agent, 20 active downloads", agent["agent_peak_rss_mb"], "<= 60"],
            ["its aria2c", agent["aria2c_peak_rss_mb"], "-"],
            [
                f"dispatcher, {load['queue_fill']['tasks']} tasks, {stage['workers']} sim workers",
                stage["dispatcher_rss_mb"],
                "<= 200",
            ],
        ],
    )
    run.write(figures)


if __name__ == "__main__":
    main()
