"""End-to-end harness: a real dispatcher, real agents with real aria2c, a Range HTTP server.

Everything listens on 127.0.0.1. With DATABASE_URL set (the PostgreSQL pass of `make test`) each
cluster gets its own fresh PostgreSQL database, dropped afterwards; with REDIS_URL set the
dispatcher uses the Redis channel layer.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ariacluster.localcluster import LocalCluster, free_port
from tests.support.rangeserver import RangeServer, make_random_file, sha256_of

FAST_CONFIG: dict[str, Any] = {
    "task_assignment": {"strategy": "least_loaded", "max_retries": 3, "retry_delay": 1},
    "worker_management": {"heartbeat_interval": 1, "heartbeat_timeout": 5},
}


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Api:
    base_url: str
    key: str

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=data,
            headers={"X-API-Key": self.key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise ApiError(exc.code, json.loads(raw) if raw else None) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body if body is not None else {})

    def task(self, task_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/v1/tasks/{task_id}/"))

    def wait_for(
        self,
        task_id: int,
        statuses: set[str],
        timeout: float = 30.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll until the task has one of `statuses` (and `where` holds); fail with its state."""
        deadline = time.monotonic() + timeout
        task: dict[str, Any] = {}
        while time.monotonic() < deadline:
            task = self.task(task_id)
            if task["status"] in statuses and (where is None or where(task)):
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} not in {statuses} after {timeout} s: {task}")


@dataclass
class Cluster:
    local: LocalCluster
    api: Api
    join_key: str
    server: RangeServer
    files: dict[str, str] = field(default_factory=dict)

    def add_file(self, name: str, size: int, seed: int | None = None) -> str:
        """Create a random file on the source server; return its URL."""
        self.files[name] = make_random_file(self.server.root / name, size, seed)
        return self.server.url(name)

    def start_agent(self, name: str, **kwargs: Any) -> None:
        self.local.start_agent(name, self.local.write_agent_config(name, self.join_key, **kwargs))

    def wait_for_workers(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        workers: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            workers = [w for w in self.api.get("/api/v1/workers/") if w["status"] == "online"]
            if len(workers) >= count:
                return workers
            time.sleep(0.1)
        raise AssertionError(f"{count} workers not online after {timeout} s: {workers}")

    def downloaded_path(self, task: dict[str, Any], index: int = 0) -> Path:
        return self.local.download_root / task["worker"] / task["result"]["files"][index]["path"]

    def assert_downloaded(self, task: dict[str, Any], name: str) -> None:
        """The task completed and the bytes on the worker's disk hash to the source's sha256."""
        assert task["status"] == "completed", task
        (entry,) = task["result"]["files"]
        assert entry["sha256"] == self.files[name], (entry, name)
        assert sha256_of(self.downloaded_path(task)) == self.files[name]


@contextmanager
def scratch_postgres_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (random name) on `admin_url`'s server; dropped after.

    Yields its URL. The random suffix keeps concurrent runs and tests from meeting.
    """
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _database(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database when DATABASE_URL is set; nothing to do for SQLite."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield env
        return
    with scratch_postgres_database(url, "ariacluster_e2e") as database_url:
        yield {**env, "DATABASE_URL": database_url}


@contextmanager
def running_cluster(
    base: Path,
    *,
    workers: int = 2,
    config: dict[str, Any] | None = None,
    agent_options: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start a dispatcher, `workers` agents (w1, w2, ...) and a source server; stop them after."""
    merged = json.loads(json.dumps(FAST_CONFIG))
    for key, value in (config or {}).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    env = {**{k: os.environ[k] for k in ("REDIS_URL",) if os.environ.get(k)}, **(env or {})}
    (base / "files").mkdir(parents=True, exist_ok=True)
    with _database(env) as env, RangeServer(base / "files") as server:
        local = LocalCluster(
            data_dir=base / "data",
            download_root=base / "downloads",
            port=free_port(),
            dispatcher_config=merged,
            env=env,
            log_dir=base / "logs",
            python=sys.executable,
        )
        local.write_dispatcher_config()
        try:
            local.manage("migrate", "-v0")
            key = local.manage("create_api_key", "--name", "e2e", "--scope", "admin", "--quiet")
            join_key = local.manage("create_join_key", "--quiet")
            local.start_dispatcher()
            cluster = Cluster(
                local=local, api=Api(local.url, key), join_key=join_key, server=server
            )
            for index in range(1, workers + 1):
                name = f"w{index}"
                cluster.start_agent(name, **(agent_options or {}).get(name, {}))
            cluster.wait_for_workers(workers)
            yield cluster
        finally:
            local.stop()


def dump_logs(base: Path) -> str:
    """The cluster's process logs, for assertion messages."""
    parts = []
    for log in sorted((base / "logs").glob("*.log")):
        parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts)
