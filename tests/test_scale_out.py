"""Two dispatcher processes sharing PostgreSQL and Redis, each serving one agent.

Runs in the PostgreSQL + Redis pass of `make test` (marker `postgres`): with SQLite and the
in-memory channel layer, a second process could not see the first one's pushes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ariacluster.localcluster import free_port
from tests.support.e2e import running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# Heartbeats far apart: a task reaching the other process's agent in well under one interval
# proves it was pushed across processes through Redis, not picked up by a heartbeat.
CONFIG = {"worker_management": {"heartbeat_interval": 3, "heartbeat_timeout": 8}}


def test_two_dispatchers_place_push_and_expire_leases_correctly(tmp_path: Path) -> None:
    assert os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"), (
        "the scale-out test needs DATABASE_URL and REDIS_URL (make test-postgres)"
    )
    with running_cluster(tmp_path, workers=1, config=CONFIG) as cluster:
        second = f"http://127.0.0.1:{free_port()}"
        cluster.local.start_dispatcher(port=int(second.rsplit(":", 1)[1]))
        cluster.start_agent("w2", dispatcher_url=second, heartbeat_interval=3)
        cluster.wait_for_workers(2)

        delays: dict[str, list[float]] = {"w1": [], "w2": []}
        for index in range(8):
            name = f"so-{index}.bin"
            url = cluster.add_file(name, 300_000)
            submitted = time.time()
            task_id = cluster.api.post("/api/tasks", {"url": url})["id"]
            task = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=20)
            cluster.assert_downloaded(task, name)
            first = cluster.server.first_request_at(name)
            assert first is not None
            delays[task["worker"]].append(first - submitted)
        assert delays["w1"] and delays["w2"], delays
        # Submitted through dispatcher 1, started by the agent connected to dispatcher 2.
        assert max(delays["w2"]) < 1.0, delays

        # Kill the second process's agent mid-download: exactly one lease expiry, one completion.
        url = cluster.add_file("so-kill.bin", 6_000_000)
        task_id = cluster.api.post("/api/tasks", {"url": f"{url}?throttle=1000000"})["id"]
        running = cluster.api.wait_for(
            task_id, {"downloading"}, where=lambda t: t["completed_length"] > 0
        )
        victim = running["worker"]
        cluster.local.agents[victim].send_signal(signal.SIGKILL)
        done = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=40)
        cluster.assert_downloaded(done, "so-kill.bin")
        events = cluster.api.get(f"/api/v1/tasks/{task_id}/events/")
        kinds = [e["kind"] for e in events]
        assert kinds.count("lease_expired") == 1, events
        assert kinds.count("completed") == 1, events
        assert done["worker"] != victim
