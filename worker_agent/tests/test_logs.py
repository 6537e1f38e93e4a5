"""Shared logging: secrets redacted, JSON lines, a rotating file for the agent and dispatcher."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker_agent.logs import JsonFormatter, RedactingFilter, redact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET /api/tasks?api_key=ack_secret&x=1", "GET /api/tasks?api_key=[redacted]&x=1"),
        ("key ack_0123abcd_SECRETpart-x", "key ack_0123abcd_[redacted]"),
        ("join acj_deadbeef_abc refused", "join acj_deadbeef_[redacted] refused"),
        ("Authorization: Bearer acw_x", "Authorization: Bearer [redacted]"),
        ('["token:s3cret", "gid"]', '["token:[redacted]", "gid"]'),
        ("rpc-secret=abc123", "rpc-secret=[redacted]"),
        ("X-API-Key: plain-config-key", "X-API-Key: [redacted]"),
        ("https://e.x/file.iso downloaded", "https://e.x/file.iso downloaded"),
    ],
)
def test_redact_hides_every_secret_shape_and_nothing_else(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_filter_redacts_arguments_and_the_json_formatter_keeps_extras() -> None:
    record = logging.LogRecord(
        "worker_agent.agent",
        logging.INFO,
        __file__,
        1,
        "registered with %s",
        ("acj_00ff00ff_x",),
        None,
    )
    record.task_id = 7

    RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "registered with acj_00ff00ff_[redacted]"
    assert line["level"] == "INFO"
    assert line["logger"] == "worker_agent.agent"
    assert line["task_id"] == 7


def test_the_agent_writes_its_log_file_as_json_with_secrets_redacted(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    log_file = tmp_path / "logs" / "worker.log"
    config.write_text(
        json.dumps(
            {
                # Nothing listens on port 9: the agent keeps retrying registration.
                "dispatcher": {"url": "http://127.0.0.1:9", "api_key": "acj_0badc0de_topsecret"},
                "aria2": {"port": 0, "download_dir": str(tmp_path / "downloads")},
                "worker": {"name": "logger-test"},
                "log_file": str(log_file),
            }
        )
    )
    env = {**os.environ, "ARIACLUSTER_LOG_FORMAT": "json"}
    agent = subprocess.Popen(
        [sys.executable, "-m", "worker_agent", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log_file.exists() and "register failed" in log_file.read_text():
                break
            time.sleep(0.1)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {line["worker"] for line in lines} == {"logger-test"}
    messages = " ".join(line["message"] for line in lines)
    assert "aria2" in messages and "register failed" in messages
    assert "topsecret" not in log_file.read_text()


def test_the_dispatcher_writes_a_rotating_log_file_when_configured(tmp_path: Path) -> None:
    log_file = tmp_path / "dispatcher.log"
    env = {
        **os.environ,
        "ARIACLUSTER_LOG_FILE": str(log_file),
        "ARIACLUSTER_LOG_FORMAT": "json",
        "ARIACLUSTER_DATA_DIR": str(tmp_path / "data"),
    }
    code = (
        "import logging; from worker_agent.logcontext import log_context\n"
        "with log_context(task_id=5, worker='nas'):\n"
        "    logging.getLogger('ariacluster').warning('GET /api/status?api_key=ack_12345678_leak')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )

    (line,) = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert line["message"] == "GET /api/status?api_key=[redacted]"
    assert line["level"] == "WARNING"
    assert (line["task_id"], line["worker"]) == (5, "nas")


def test_an_unknown_log_format_stops_the_dispatcher_with_exit_code_2(tmp_path: Path) -> None:
    env = {**os.environ, "ARIACLUSTER_LOG_FORMAT": "xml", "ARIACLUSTER_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert result.returncode == 2
    assert "ARIACLUSTER_LOG_FORMAT" in result.stderr
