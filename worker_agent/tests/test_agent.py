from __future__ import annotations

import threading

import pytest

from tests.support.rangeserver import make_random_file
from worker_agent.agent import Agent

from .conftest import wait_until
from .stub_dispatcher import StubDispatcher


@pytest.fixture
def dispatcher():
    with StubDispatcher(heartbeat_interval=0.3) as stub:
        yield stub


@pytest.fixture
def run_agent(make_config, dispatcher):
    started = []

    def start(**sections):
        sections.setdefault("dispatcher", {})["url"] = dispatcher.url
        agent = Agent(make_config(**sections))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        started.append((agent, thread))
        return agent

    yield start
    for agent, thread in started:
        agent.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive()


def test_assigned_task_is_started_completed_with_sha256_and_then_forgotten(
    run_agent, dispatcher, rangeserver, files
):
    digest = make_random_file(files / "data.bin", 1_500_000, seed=9)
    dispatcher.assignments = [
        {
            "task_id": 7,
            "epoch": 2,
            "kind": "http",
            "uris": [rangeserver.url("data.bin")],
            "options": {"split": "2"},
            "state": "run",
        }
    ]
    agent = run_agent()

    register = dispatcher.wait_for("/register")[0][1]
    assert register["name"] == "worker-test" and register["max_tasks"] == 5
    assert dispatcher.wait_for("/tasks/7/started")[0][1] == {"epoch": 2, "gid": "0000000000070002"}
    completed = dispatcher.wait_for("/tasks/7/completed")[0][1]
    assert completed == {
        "epoch": 2,
        "files": [{"path": "task-7/data.bin", "size": 1_500_000, "sha256": digest}],
    }
    dispatcher.assignments = []
    wait_until(lambda: agent.journal.entries() == {})
    assert (agent.config.download_dir / "task-7" / "data.bin").exists()
    heartbeat = dispatcher.reports("/heartbeat")[0][1]
    assert set(heartbeat) == {"slots_used", "download_speed", "upload_speed", "free_disk", "tasks"}


def test_aria2_error_is_reported_as_failed_with_its_error_code(run_agent, dispatcher, rangeserver):
    dispatcher.assignments = [
        {"task_id": 3, "epoch": 1, "uris": [rangeserver.url("missing.bin")], "state": "run"}
    ]
    agent = run_agent()
    failed = dispatcher.wait_for("/tasks/3/failed")[0][1]
    assert failed["epoch"] == 1 and failed["error_code"] == 3
    dispatcher.assignments = []
    wait_until(lambda: agent.journal.entries() == {})
    assert not (agent.config.download_dir / "task-3").exists()


def test_409_on_completion_drops_the_download_and_its_files(
    run_agent, dispatcher, rangeserver, files
):
    make_random_file(files / "x.bin", 200_000, seed=1)
    dispatcher.responses["/tasks/5/completed"] = (409, {"error": "stale lease", "detail": {}})
    dispatcher.assignments = [
        {"task_id": 5, "epoch": 4, "uris": [rangeserver.url("x.bin")], "state": "run"}
    ]
    agent = run_agent()
    dispatcher.wait_for("/tasks/5/completed")
    wait_until(lambda: agent.journal.entries() == {})
    assert not (agent.config.download_dir / "task-5").exists()


def test_task_no_longer_listed_is_removed_mid_download(run_agent, dispatcher, rangeserver, files):
    make_random_file(files / "slow.bin", 2_000_000, seed=2)
    rangeserver.set_throttle(100_000)
    dispatcher.assignments = [
        {"task_id": 8, "epoch": 1, "uris": [rangeserver.url("slow.bin")], "state": "run"}
    ]
    agent = run_agent()
    dispatcher.wait_for("/tasks/8/started")
    wait_until(lambda: dispatcher.reports("/progress"))
    progress = dispatcher.reports("/progress")[-1][1]["tasks"][0]
    assert progress["task_id"] == 8 and progress["gid"] == "0000000000080001"
    dispatcher.assignments = []
    wait_until(lambda: agent.journal.entries() == {})
    assert not (agent.config.download_dir / "task-8").exists()
    assert dispatcher.reports("/tasks/8/completed") == []


def test_agent_pauses_downloads_when_heartbeats_fail_for_the_timeout(
    run_agent, dispatcher, rangeserver, files
):
    make_random_file(files / "slow.bin", 2_000_000, seed=3)
    rangeserver.set_throttle(100_000)
    dispatcher.assignments = [
        {"task_id": 4, "epoch": 1, "uris": [rangeserver.url("slow.bin")], "state": "run"}
    ]
    agent = run_agent(agent={"heartbeat_timeout": 1.0})
    dispatcher.wait_for("/tasks/4/started")
    dispatcher.responses["/heartbeat"] = (503, {"error": "down"})
    gid = "0000000000040001"
    wait_until(lambda: agent.rpc.tell_status(gid)["status"] == "paused", timeout=10)
    del dispatcher.responses["/heartbeat"]
    wait_until(lambda: agent.rpc.tell_status(gid)["status"] == "active", timeout=10)
