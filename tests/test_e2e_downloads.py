"""End to end: real dispatcher, agents and aria2c download from a real Range server on 127.0.0.1."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import ApiError, Cluster, dump_logs, running_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("e2e-least-loaded")
    with running_cluster(base) as running:
        yield running


def _submit(cluster: Cluster, names: list[str], size: int, **extra: object) -> list[int]:
    return [
        cluster.api.post("/api/tasks", {"url": cluster.add_file(n, size), **extra})["id"]
        for n in names
    ]


def test_least_loaded_spreads_downloads_over_both_workers_and_bytes_match(
    cluster: Cluster,
) -> None:
    names = [f"ll-{i}.bin" for i in range(6)]
    ids = _submit(cluster, names, 2_000_000)
    tasks = [cluster.api.wait_for(i, {"completed", "failed"}) for i in ids]
    for task, name in zip(tasks, names, strict=True):
        cluster.assert_downloaded(task, name)
    per_worker = Counter(t["worker"] for t in tasks)
    assert set(per_worker) == {"w1", "w2"}, per_worker


def test_original_api_shapes_and_status_work_verbatim(cluster: Cluster) -> None:
    (task_id,) = _submit(cluster, ["shape.bin"], 100_000, options={"split": "2"}, priority=3)
    task = cluster.api.get(f"/api/tasks/{task_id}")
    for key in (
        "id",
        "url",
        "status",
        "priority",
        "worker_id",
        "options",
        "progress",
        "download_speed",
        "error_message",
        "result",
        "created_at",
        "updated_at",
    ):
        assert key in task
    assert task["priority"] == 3
    done = cluster.api.wait_for(task_id, {"completed"})
    assert done["progress"] == 100.0
    status = cluster.api.get("/api/status")
    assert status["workers"]["online"] + status["workers"]["busy"] == 2
    assert status["tasks"]["completed"] >= 1


def test_a_missing_file_fails_at_once_with_a_clear_reason(cluster: Cluster) -> None:
    task_id = cluster.api.post("/api/tasks", {"url": cluster.server.url("nope.bin")})["id"]
    task = cluster.api.wait_for(task_id, {"failed"}, timeout=20)
    assert task["error_code"] == 3
    assert task["error_class"] == "permanent"
    assert "not found" in task["error_message"].lower()
    assert task["attempts"] == 1
    kinds = [e["kind"] for e in cluster.api.get(f"/api/v1/tasks/{task_id}/events/")]
    assert kinds.count("assigned") == 1 and "retried" not in kinds


def test_a_flaky_source_succeeds_after_a_dispatcher_retry(cluster: Cluster) -> None:
    url = cluster.add_file("flaky.bin", 300_000)
    cluster.server.set_flaky("flaky.bin", failures=1, mode="drop")
    task_id = cluster.api.post("/api/tasks", {"url": url, "options": {"max-tries": "1"}})["id"]
    task = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=30)
    cluster.assert_downloaded(task, "flaky.bin")
    events = cluster.api.get(f"/api/v1/tasks/{task_id}/events/")
    kinds = [e["kind"] for e in events]
    assert "retried" in kinds, events
    assert kinds.count("assigned") == 2, events
    assert task["attempts"] == 1


def test_cancel_mid_download_stops_it_and_removes_the_files(cluster: Cluster) -> None:
    url = cluster.add_file("cancel.bin", 20_000_000)
    task_id = cluster.api.post("/api/tasks", {"url": url + "?throttle=1000000"})["id"]
    task = cluster.api.wait_for(task_id, {"downloading"}, where=lambda t: t["completed_length"] > 0)
    cluster.api.call("DELETE", f"/api/tasks/{task_id}")
    folder = cluster.local.download_root / task["worker"] / f"task-{task_id}"
    deadline = time.monotonic() + 15
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not folder.exists(), dump_logs(cluster.local.data_dir.parent)
    served = cluster.server.bytes_served("cancel.bin")
    time.sleep(1.5)
    assert cluster.server.bytes_served("cancel.bin") - served < 200_000
    assert cluster.api.task(task_id)["status"] == "canceled"
    with pytest.raises(ApiError) as refused:
        cluster.api.post(f"/api/v1/tasks/{task_id}/pause/")
    assert refused.value.status == 409


def test_pause_and_resume_mid_download_finishes_with_correct_bytes(cluster: Cluster) -> None:
    url = cluster.add_file("pause.bin", 6_000_000)
    cluster.server.set_throttle(2_000_000)
    try:
        task_id = cluster.api.post("/api/tasks", {"url": url})["id"]
        cluster.api.wait_for(task_id, {"downloading"}, where=lambda t: t["completed_length"] > 0)
        cluster.api.post(f"/api/v1/tasks/{task_id}/pause/")
        time.sleep(1.0)
        served = cluster.server.bytes_served("pause.bin")
        time.sleep(1.5)
        assert cluster.server.bytes_served("pause.bin") - served < 300_000
        assert cluster.api.task(task_id)["status"] == "paused"
    finally:
        cluster.server.set_throttle(None)
    cluster.api.post(f"/api/v1/tasks/{task_id}/resume/")
    task = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=30)
    cluster.assert_downloaded(task, "pause.bin")


def test_mirrors_of_one_file_download_as_one_task(cluster: Cluster) -> None:
    url = cluster.add_file("mirrored.bin", 3_000_000)
    other = url.replace("127.0.0.1", "localhost")
    task_id = cluster.api.post("/api/v1/tasks/", {"uris": [url, other], "options": {"split": "4"}})[
        "id"
    ]
    task = cluster.api.wait_for(task_id, {"completed", "failed"})
    cluster.assert_downloaded(task, "mirrored.bin")


@pytest.mark.parametrize("strategy", ["round_robin", "random", "tags"])
def test_each_strategy_places_and_completes_downloads(strategy: str, tmp_path: Path) -> None:
    options = {"w2": {"capabilities": {"tags": {"site": "lab"}}}} if strategy == "tags" else {}
    with running_cluster(
        tmp_path, config={"task_assignment": {"strategy": strategy}}, agent_options=options
    ) as cluster:
        names = [f"{strategy}-{i}.bin" for i in range(4)]
        if strategy == "tags":
            ids = _submit(cluster, names[:2], 500_000, tags=["site=lab"])
            ids += _submit(cluster, names[2:], 500_000)
        else:
            ids = _submit(cluster, names, 500_000)
        tasks = [cluster.api.wait_for(i, {"completed", "failed"}) for i in ids]
        for task, name in zip(tasks, names, strict=True):
            cluster.assert_downloaded(task, name)
        workers = [t["worker"] for t in tasks]
        if strategy == "round_robin":
            assert Counter(workers) == {"w1": 2, "w2": 2}, workers
        if strategy == "tags":
            assert workers[:2] == ["w2", "w2"], workers
            assert workers[2:] == ["w1", "w1"], workers
