from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.rangeserver import RangeServer
from worker_agent.config import AgentConfig, parse_config
from worker_agent.supervisor import Aria2Supervisor


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def rangeserver(files: Path) -> Iterator[RangeServer]:
    with RangeServer(files) as server:
        yield server


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., AgentConfig]:
    def build(**sections: Any) -> AgentConfig:
        data: dict[str, Any] = {
            "dispatcher": {"url": "http://127.0.0.1:9", "api_key": "join-secret"},
            "aria2": {"port": 0, "download_dir": str(tmp_path / "downloads")},
            "worker": {"name": "worker-test", "max_tasks": 5},
            "log_level": "DEBUG",
        }
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        return parse_config(data)

    return build


@pytest.fixture
def supervisor(make_config: Callable[..., AgentConfig]) -> Iterator[Aria2Supervisor]:
    sup = Aria2Supervisor(make_config())
    sup.start()
    yield sup
    sup.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, step: float = 0.05) -> Any:
    """Return the first truthy value of ``predicate()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
