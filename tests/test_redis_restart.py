"""Redis restarted under two dispatcher processes: no state change lost, live channels recover.

Uses a private redis-server on its own port (the machine's shared Redis is left alone).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from ariacluster.localcluster import free_port
from tests.support.e2e import Cluster, running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CONFIG = {"worker_management": {"heartbeat_interval": 2, "heartbeat_timeout": 10}}


@contextmanager
def private_redis(port: int) -> Iterator[callable]:  # type: ignore[valid-type]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    command = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    state: dict[str, subprocess.Popen[bytes]] = {}

    def start() -> None:
        state["p"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis(port=port, socket_timeout=1).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def restart() -> None:
        state["p"].kill()
        state["p"].wait()
        time.sleep(1.0)
        start()

    start()
    try:
        yield restart
    finally:
        state["p"].kill()
        state["p"].wait()


def _dashboard_socket(cluster: Cluster, base_url: str) -> websocket.WebSocket:
    """Log in as staff through the login form and open the dashboard websocket."""
    cluster.local.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model as m;"
        "m().objects.filter(username='ops').exists() or "
        "m().objects.create_superuser('ops', '', 'pass-for-tests-only')",
    )
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=5)
    token = session.cookies["csrftoken"]
    session.post(
        f"{base_url}/accounts/login/",
        timeout=5,
        data={"username": "ops", "password": "pass-for-tests-only", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/accounts/login/"},
    )
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    ws_url = base_url.replace("http://", "ws://") + "/ws/dashboard/"
    return websocket.create_connection(ws_url, timeout=2, cookie=cookie, origin=base_url)


def _notices(sock: websocket.WebSocket, seconds: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(json.loads(sock.recv()))
        except websocket.WebSocketTimeoutException:
            continue
    return got


def test_redis_restart_loses_no_state_change_and_live_channels_recover(tmp_path: Path) -> None:
    port = free_port()
    with (
        private_redis(port) as restart_redis,
        running_cluster(
            tmp_path, workers=1, config=CONFIG, env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        ) as cluster,
    ):
        second_port = free_port()
        second = f"http://127.0.0.1:{second_port}"
        cluster.local.start_dispatcher(port=second_port)
        cluster.start_agent("w2", dispatcher_url=second, heartbeat_interval=2)
        cluster.wait_for_workers(2)
        sock = _dashboard_socket(cluster, second)

        before = cluster.api.post("/api/tasks", {"url": cluster.add_file("r0.bin", 200_000)})
        cluster.assert_downloaded(cluster.api.wait_for(before["id"], {"completed"}), "r0.bin")
        seen = {i for n in _notices(sock, 1.0) if n.get("type") == "tasks" for i in n["ids"]}
        assert before["id"] in seen  # written through process 1, heard on process 2

        restart_redis()

        ids = []
        for index in range(1, 7):
            url = cluster.add_file(f"r{index}.bin", 200_000)
            ids.append((cluster.api.post("/api/tasks", {"url": url})["id"], f"r{index}.bin"))
        for task_id, name in ids:
            cluster.assert_downloaded(
                cluster.api.wait_for(task_id, {"completed"}, timeout=30), name
            )
        workers = {cluster.api.task(t)["worker"] for t, _ in ids}
        assert workers == {"w1", "w2"}, workers

        # The dashboard hears about changes again (on its socket, or on a reconnected one).
        try:
            sock.ping()
        except (websocket.WebSocketException, OSError):
            sock = _dashboard_socket(cluster, second)
        deadline = time.monotonic() + 20
        heard = False
        while not heard and time.monotonic() < deadline:
            probe = cluster.api.post("/api/tasks", {"url": cluster.add_file("probe.bin", 1000)})
            try:
                notices = _notices(sock, 2.0)
            except (websocket.WebSocketException, OSError):
                sock = _dashboard_socket(cluster, second)
                continue
            heard = any(probe["id"] in n.get("ids", []) for n in notices)
        assert heard, "the dashboard never heard of changes again after the Redis restart"
        sock.close()
        # The agent's socket on process 2 was dropped with the channel layer and re-opened.
        log = (cluster.local.log_dir / "agent-w2.log").read_text()  # type: ignore[operator]
        assert log.count("websocket connected") >= 2
