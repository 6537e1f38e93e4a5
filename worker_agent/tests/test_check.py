"""``python -m worker_agent --check``: exit 0 only when aria2c answers and the state dir is sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from worker_agent.config import parse_config
from worker_agent.health import agent_health
from worker_agent.supervisor import Aria2Supervisor

ROOT = Path(__file__).resolve().parents[2]


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "worker.json"
    config = {
        "dispatcher": {"url": "http://127.0.0.1:9", "api_key": "join-secret"},
        "aria2": {"port": 0, "download_dir": str(tmp_path / "downloads")},
        "worker": {"name": "worker-check", "max_tasks": 2},
    }
    path.write_text(json.dumps(config))
    return path


def _check(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker_agent", "--check", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_passes_while_the_agents_aria2c_answers_and_fails_once_it_stops(
    tmp_path: Path,
) -> None:
    config_path = _write_config(tmp_path)
    config = parse_config(json.loads(config_path.read_text()))
    supervisor = Aria2Supervisor(config)
    supervisor.start()
    try:
        healthy = _check(config_path)
    finally:
        supervisor.stop()
    stopped = _check(config_path)

    assert healthy.returncode == 0, healthy.stderr
    assert "worker-check healthy" in healthy.stdout
    assert stopped.returncode == 1
    assert "aria2c does not answer RPC" in stopped.stderr


def test_check_fails_before_the_agent_ever_started(tmp_path: Path) -> None:
    result = _check(_write_config(tmp_path))

    assert result.returncode == 1
    assert "state dir" in result.stderr
    assert "has the agent started" in result.stderr


def test_a_state_dir_others_can_read_is_unhealthy(tmp_path: Path) -> None:
    config = parse_config(
        {"aria2": {"port": 0, "download_dir": str(tmp_path / "d")}, "worker": {"name": "w"}}
    )
    supervisor = Aria2Supervisor(config)
    supervisor.start()
    try:
        assert agent_health(config) == []
        config.state_dir.chmod(0o755)
        problems = agent_health(config)
    finally:
        config.state_dir.chmod(0o700)
        supervisor.stop()

    assert problems == [
        f"state dir {config.state_dir} is accessible by others (mode 755, expected 700)"
    ]


def test_an_invalid_config_is_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    path.write_text('{"worker": {"max_tasks": 0}}')

    assert _check(path).returncode == 2
