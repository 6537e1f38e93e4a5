"""The container entrypoints, run as-is outside Docker against local PostgreSQL and Redis.

`docker/entrypoint-dispatcher.sh` must wait for the database, migrate a fresh one, collect
static files, create the workers' join key and serve /healthz and /readyz; a worker started by
`docker/entrypoint-worker.sh` must register with that key and pass its `--check`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ariacluster.localcluster import free_port, wait_for_http
from tests.support.e2e import scratch_postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    with scratch_postgres_database(POSTGRES_URL, "ariacluster_entry") as url:
        yield url


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _get(url: str) -> tuple[int, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return response.status, json.loads(response.read())


def test_entrypoints_start_a_dispatcher_on_a_fresh_database_and_a_worker_that_joins_it(
    tmp_path: Path, fresh_database: str
) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {
        **os.environ,
        # `python` on PATH is this interpreter, as it is the image's in the container.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": fresh_database,
        "REDIS_URL": REDIS_URL,
        "ARIACLUSTER_DATA_DIR": str(data),
        "ARIACLUSTER_JOIN_KEY": "",
    }
    dispatcher = subprocess.Popen(
        ["docker/entrypoint-dispatcher.sh", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "dispatcher.out").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", dispatcher, 120)
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert _get(f"http://127.0.0.1:{port}/readyz") == (200, {"status": "ok"})
        join_key = data / "join_key"
        assert join_key.read_text().startswith("acj_")
        assert join_key.stat().st_mode & 0o777 == 0o600
        assert (data / "staticfiles" / "dashboard").is_dir()

        # No config file (the script's /app/config/worker.json is absent here): env only.
        worker_env = {
            **{k: v for k, v in env.items() if k != "ARIACLUSTER_WORKER_CONFIG"},
            "ARIACLUSTER_DISPATCHER_URL": f"http://127.0.0.1:{port}",
            "ARIACLUSTER_WORKER_NAME": "entry-worker",
            "ARIACLUSTER_DOWNLOAD_DIR": str(tmp_path / "downloads"),
        }
        worker = subprocess.Popen(
            ["docker/entrypoint-worker.sh"],
            cwd=ROOT,
            env=worker_env,
            stdout=(tmp_path / "worker.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        check = [sys.executable, "-m", "worker_agent", "--check"]
        deadline = time.monotonic() + 60
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            healthy = subprocess.run(check, cwd=ROOT, env=worker_env, capture_output=True)
            listing = subprocess.run(
                [sys.executable, "manage.py", "cluster_status", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            status = json.loads(listing.stdout or "{}")
            if healthy.returncode == 0 and status.get("total_workers") == 1:
                break
            time.sleep(0.5)
        assert status.get("total_workers") == 1, (tmp_path / "worker.out").read_text()
        assert status["workers"] == {"online": 1, "busy": 0, "offline": 0, "error": 0}
    finally:
        if worker is not None:
            _stop(worker)
        _stop(dispatcher)
    assert dispatcher.returncode is not None
