"""B7 — failover: SIGKILL the agent holding a large download half way; time to re-placement,
time to completion, bytes fetched twice — with the default heartbeat config (10 s / 30 s) and a
tight one (5 s / 15 s).

For each config: a dispatcher (SQLite), two agents with their own aria2c, the Python Range
server throttling each response (so the download is mid-way when killed). One 500 MB task (50 MB
with --small); when the dispatcher shows it half done, the agent holding it is SIGKILLed (its
aria2c was started with --stop-with-process and stops too, like a host going down). Measured from
the kill: the task leased to the other worker (its ``assigned_at``), and completed
(``finished_at``). Bytes fetched twice = bytes the server sent for the file minus its size. The
file on the surviving worker's disk is verified by sha256.

No target figure in the issue: report the numbers.

Usage: python -m bench.b7_failover [--small] [--size 500000000] [--throttle 5000000]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Run, cluster, parse_ts, table

CONFIGS = {
    "default (10 s / 30 s)": {"heartbeat_interval": 10, "heartbeat_timeout": 30},
    "tight (5 s / 15 s)": {"heartbeat_interval": 5, "heartbeat_timeout": 15},
}


def failover(size: int, throttle: int, heartbeat: dict[str, float]) -> dict[str, Any]:
    config = {"worker_management": heartbeat}
    options = {f"w{i}": {"heartbeat_interval": heartbeat["heartbeat_interval"]} for i in (1, 2)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(Path(tmp), config=config, agent_options=options) as running,
    ):
        name = "big.bin"
        url = running.add_file(name, size) + f"?throttle={throttle}"
        submitted = time.time()
        task_id = running.api.post("/api/v1/tasks/", {"url": url})["id"]
        task = running.api.wait_for(
            task_id,
            {"downloading"},
            timeout=600,
            where=lambda t: t["completed_length"] >= size // 2,
        )
        victim = task["worker"]
        process = running.local.agents[victim]
        process.send_signal(signal.SIGKILL)
        killed = time.time()
        process.wait()
        at_kill = task["completed_length"]
        moved = running.api.wait_for(
            task_id,
            {"queued", "downloading", "completed"},
            timeout=600,
            where=lambda t: t["worker"] not in (None, victim),
        )
        done = running.api.wait_for(task_id, {"completed", "failed"}, timeout=900)
        running.assert_downloaded(done, name)
        served = running.server.bytes_served(name)
    return {
        "size": size,
        "throttle_per_connection": throttle,
        "heartbeat": heartbeat,
        "completed_at_kill": at_kill,
        "submit_to_kill_s": round(killed - submitted, 2),
        "kill_to_replaced_s": round(parse_ts(moved["assigned_at"]) - killed, 2),
        "kill_to_completed_s": round(parse_ts(done["finished_at"]) - killed, 2),
        "bytes_served": served,
        "bytes_fetched_twice": served - size,
        "verified_sha256": True,
        "attempts": done["attempts"],
        "epoch": done["epoch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="50 MB")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--throttle", type=int, default=None, help="bytes/s per connection")
    args = parser.parse_args()
    size = args.size or (50_000_000 if args.small else 500_000_000)
    throttle = args.throttle or (2_000_000 if args.small else 5_000_000)
    run = Run("b7_failover", args.small)
    results = {label: failover(size, throttle, hb) for label, hb in CONFIGS.items()}
    print(f"\nB7: SIGKILL the agent holding a {size} byte download half way")
    table(
        ["config", "kill -> re-placed s", "kill -> completed s", "bytes fetched twice", "sha256"],
        [
            [
                label,
                r["kill_to_replaced_s"],
                r["kill_to_completed_s"],
                r["bytes_fetched_twice"],
                "ok",
            ]
            for label, r in results.items()
        ],
    )
    run.write({"size": size, "results": results})


if __name__ == "__main__":
    main()
