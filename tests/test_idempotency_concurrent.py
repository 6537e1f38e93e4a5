"""Ten concurrent creates with one `Idempotency-Key` against a real dispatcher: one task.

On PostgreSQL the requests are split over two dispatcher processes, so they really race in the
database; on SQLite one process serves them (its write lock orders them).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from pathlib import Path

import pytest

from ariacluster.localcluster import free_port
from tests.support.e2e import running_cluster

pytestmark = pytest.mark.e2e


def test_ten_concurrent_creates_with_one_key_make_one_task_and_ten_identical_answers(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, workers=1) as cluster:
        urls = [cluster.local.url]
        if os.environ.get("DATABASE_URL"):
            port = free_port()
            cluster.local.start_dispatcher(port=port)
            urls.append(f"http://127.0.0.1:{port}")
        body = json.dumps({"url": cluster.add_file("once.bin", 100_000)}).encode()
        answers: list[tuple[int, dict]] = []
        barrier = threading.Barrier(10)

        def create(index: int) -> None:
            request = urllib.request.Request(
                urls[index % len(urls)] + "/api/tasks",
                data=body,
                method="POST",
                headers={
                    "X-API-Key": cluster.api.key,
                    "Content-Type": "application/json",
                    "Idempotency-Key": "concurrent-create-1",
                },
            )
            barrier.wait()
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append((response.status, json.loads(response.read())))

        threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(answers) == 10
        assert {status for status, _ in answers} == {201}
        assert all(answer == answers[0][1] for _, answer in answers)
        assert cluster.api.get("/api/v1/tasks/")["count"] == 1
        done = cluster.api.wait_for(answers[0][1]["id"], {"completed"})
        cluster.assert_downloaded(done, "once.bin")
