"""`database.type: memory` serves concurrent requests and forgets everything on restart."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from ariacluster.localcluster import LocalCluster, free_port

# The embedded mode: the PostgreSQL pass (DATABASE_URL set) would not exercise it.
pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only]


def _create(url: str, index: int, codes: list[int]) -> None:
    body = json.dumps({"url": f"http://127.0.0.1:9/file-{index}.bin"}).encode()
    request = urllib.request.Request(
        f"{url}/api/tasks",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        codes.append(response.status)


def _total(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/status", timeout=10) as response:
        return int(json.loads(response.read())["total_tasks"])


def test_memory_database_takes_concurrent_creates_and_is_empty_after_a_restart(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(
        data_dir=tmp_path / "data",
        download_root=tmp_path / "downloads",
        port=free_port(),
        dispatcher_config={"database": {"type": "memory"}, "security": {"api_key_required": False}},
        log_dir=tmp_path / "logs",
    )
    cluster.write_dispatcher_config()
    try:
        cluster.start_dispatcher()
        codes: list[int] = []
        threads = [
            threading.Thread(target=_create, args=(cluster.url, i, codes)) for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert codes == [201] * 20
        assert _total(cluster.url) == 20
        cluster.stop()
        cluster.dispatchers.clear()
        cluster.start_dispatcher()
        assert _total(cluster.url) == 0
    finally:
        cluster.stop()
