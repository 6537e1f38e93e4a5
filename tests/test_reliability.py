"""Crashes, stalls and restarts with real processes and real signals: nothing lost, nothing twice.

Cluster timing (tests/support/e2e.py FAST_CONFIG): heartbeat every 1 s, lease 5 s, maintenance
pass every 1 s. So a silent worker's task must be re-placed within 5 + 1 + a little seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import Cluster, dump_logs, running_cluster
from tests.support.procs import alive, aria2c_of
from worker_agent.supervisor import find_aria2c

pytestmark = pytest.mark.e2e

LEASE = 5.0
FAILOVER_BOUND = LEASE + 4.0


def _aria2c_of(agent_pid: int) -> int:
    pid = aria2c_of(agent_pid)
    assert pid is not None, f"agent {agent_pid} has no aria2c child"
    return pid


def _events(cluster: Cluster, task_id: int) -> list[dict[str, Any]]:
    return list(cluster.api.get(f"/api/v1/tasks/{task_id}/events/"))


def _when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")).timestamp()


def _start_slow(cluster: Cluster, name: str, size: int, rate: int) -> dict[str, Any]:
    url = cluster.add_file(name, size)
    task_id = cluster.api.post("/api/tasks", {"url": f"{url}?throttle={rate}"})["id"]
    return cluster.api.wait_for(
        task_id, {"downloading"}, where=lambda t: t["completed_length"] > 0, timeout=20
    )


def _other(name: str) -> str:
    return "w2" if name == "w1" else "w1"


def _wait_gone(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def test_killed_agent_loses_its_lease_and_the_task_completes_once_elsewhere(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        task = _start_slow(cluster, "kill.bin", 8_000_000, 1_000_000)
        victim = task["worker"]
        agent = cluster.local.agents[victim]
        aria2c = _aria2c_of(agent.pid)
        killed_at = time.time()
        agent.send_signal(signal.SIGKILL)
        agent.wait()

        # aria2c was started with --stop-with-process: it must not go on downloading alone.
        deadline = time.monotonic() + 5
        while alive(aria2c) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(aria2c), "aria2c outlived its killed agent"

        moved = cluster.api.wait_for(
            task["id"],
            {"queued", "downloading"},
            timeout=FAILOVER_BOUND + 5,
            where=lambda t: t["worker"] == _other(victim),
        )
        assigned = [e for e in _events(cluster, task["id"]) if e["kind"] == "assigned"]
        failover = _when(assigned[-1]) - killed_at
        assert failover <= FAILOVER_BOUND, f"re-placed after {failover:.1f} s"
        assert moved["epoch"] == task["epoch"] + 2  # lease loss, then the new assignment

        done = cluster.api.wait_for(task["id"], {"completed", "failed"}, timeout=30)
        cluster.assert_downloaded(done, "kill.bin")
        assert done["worker"] == _other(victim)

        # The killed agent comes back: it must drop its stale copy and partial files.
        cluster.start_agent(victim)
        stale = cluster.local.download_root / victim / f"task-{task['id']}"
        assert _wait_gone(stale, 20), dump_logs(tmp_path)
        kinds = [e["kind"] for e in _events(cluster, task["id"])]
        assert kinds.count("completed") == 1
        assert "lease_expired" in kinds
        print(f"failover after agent SIGKILL: {failover:.2f} s")


def test_stalled_agent_fences_itself_and_never_completes_a_replaced_task(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        cluster.server.set_throttle(600_000)
        task = _start_slow(cluster, "stall.bin", 9_000_000, 600_000)
        victim = task["worker"]
        agent = cluster.local.agents[victim]
        agent.send_signal(signal.SIGSTOP)
        try:
            cluster.api.wait_for(
                task["id"],
                {"queued", "downloading"},
                timeout=FAILOVER_BOUND + 5,
                where=lambda t: t["worker"] == _other(victim),
            )
            # Let the new holder go full speed; the stalled aria2c keeps its slow connection.
            cluster.server.set_throttle(None)
        finally:
            agent.send_signal(signal.SIGCONT)
        done = cluster.api.wait_for(task["id"], {"completed", "failed"}, timeout=40)
        cluster.assert_downloaded(done, "stall.bin")
        assert done["worker"] == _other(victim)
        stale = cluster.local.download_root / victim / f"task-{task['id']}"
        assert _wait_gone(stale, 20), dump_logs(tmp_path)
        completions = [e for e in _events(cluster, task["id"]) if e["kind"] == "completed"]
        assert len(completions) == 1 and completions[0]["worker_name"] == _other(victim)
        # The resumed agent is healthy again and takes new work.
        assert cluster.local.agents[victim].poll() is None


def test_killed_aria2c_is_restarted_and_the_download_resumes_from_its_control_file(
    tmp_path: Path,
) -> None:
    size, rate = 24_000_000, 3_000_000
    with running_cluster(tmp_path) as cluster:
        task = _start_slow(cluster, "resume.bin", size, rate)
        agent = cluster.local.agents[task["worker"]]
        # Past one control-file save (--auto-save-interval=5), then kill aria2c mid-download.
        time.sleep(6.5)
        aria2c = _aria2c_of(agent.pid)
        os.kill(aria2c, signal.SIGKILL)
        done = cluster.api.wait_for(task["id"], {"completed", "failed"}, timeout=40)
        cluster.assert_downloaded(done, "resume.bin")
        assert done["worker"] == task["worker"] and done["epoch"] == task["epoch"]
        folder = cluster.local.download_root / done["worker"] / f"task-{task['id']}"
        assert sorted(p.name for p in folder.iterdir()) == ["resume.bin"]
        refetched = cluster.server.bytes_served("resume.bin") - size
        # At most what arrived since the last save (5 s) plus the restart time, at `rate`.
        assert refetched <= rate * 7, refetched
        print(f"bytes re-fetched after aria2c SIGKILL: {refetched} of {size}")


def test_restarted_agent_reconciles_with_a_running_aria2c_without_duplicates(
    tmp_path: Path,
) -> None:
    secret = "reliability-test-secret"
    port = _free_port()
    session = tmp_path / "external.session"
    session.touch()
    aria2c = subprocess.Popen(
        [
            str(find_aria2c(None)),
            "--enable-rpc",
            "--rpc-listen-all=false",
            f"--rpc-listen-port={port}",
            f"--rpc-secret={secret}",
            "--no-netrc=true",
            "--seed-time=0",
            "--quiet",
            f"--save-session={session}",
            "--max-download-result=1000",
        ],
    )
    try:
        attach = {"spawn": False, "port": port, "rpc_secret": secret}
        with running_cluster(
            tmp_path / "c", workers=1, agent_options={"w1": {"aria2": attach}}
        ) as cluster:
            running = _start_slow(cluster, "agentless.bin", 3_000_000, 1_000_000)
            agent = cluster.local.agents["w1"]
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            time.sleep(3.5)  # the download finishes while no agent watches (within the lease)
            cluster.start_agent("w1", aria2=attach)
            done = cluster.api.wait_for(running["id"], {"completed", "failed"}, timeout=20)
            cluster.assert_downloaded(done, "agentless.bin")
            kinds = [e["kind"] for e in _events(cluster, running["id"])]
            assert kinds.count("assigned") == 1 and kinds.count("completed") == 1
            stopped = _rpc(port, secret, "aria2.tellStopped", 0, 1000, ["gid", "errorCode"])
            codes = {item.get("errorCode") for item in stopped}
            assert not codes & {"11", "12"}, stopped
    finally:
        aria2c.terminate()
        aria2c.wait(10)


def test_dispatcher_restart_loses_nothing_and_workers_are_not_declared_dead(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        task = _start_slow(cluster, "restart.bin", 6_000_000, 1_000_000)
        (dispatcher,) = cluster.local.dispatchers
        dispatcher.send_signal(signal.SIGKILL)
        dispatcher.wait()
        cluster.local.dispatchers.clear()
        time.sleep(LEASE + 1)  # longer than a lease: only the start-up grace saves the workers
        cluster.local.start_dispatcher()
        queued = cluster.api.post("/api/tasks", {"url": cluster.add_file("after.bin", 200_000)})
        done = cluster.api.wait_for(task["id"], {"completed", "failed"}, timeout=30)
        cluster.assert_downloaded(done, "restart.bin")
        cluster.assert_downloaded(
            cluster.api.wait_for(queued["id"], {"completed", "failed"}, timeout=20), "after.bin"
        )
        kinds = [e["kind"] for e in _events(cluster, task["id"])]
        assert "lease_expired" not in kinds and kinds.count("assigned") == 1


def _free_port() -> int:
    from ariacluster.localcluster import free_port

    return free_port()


def _rpc(port: int, secret: str, method: str, *params: Any) -> Any:
    import json
    import urllib.request

    body = json.dumps(
        {"jsonrpc": "2.0", "id": "t", "method": method, "params": [f"token:{secret}", *params]}
    ).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/jsonrpc", data=body)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]
