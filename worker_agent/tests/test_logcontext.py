"""Task and worker ids on every log line: the context, the filter, both formats, the agent."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.rangeserver import make_random_file
from worker_agent.logcontext import (
    LogContextFilter,
    current_log_context,
    log_context,
    with_task_log_context,
)
from worker_agent.logs import JsonFormatter, RedactingFilter, plain_formatter

from .stub_dispatcher import StubDispatcher

ROOT = Path(__file__).resolve().parents[2]


def record(message: str = "hello", *args: object, **extra: object) -> logging.LogRecord:
    """A record as a logging call inside the current context would hand to a handler."""
    made = logging.LogRecord("worker_agent.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    LogContextFilter().filter(made)
    RedactingFilter().filter(made)
    return made


def test_plain_lines_show_the_task_and_worker_of_the_context() -> None:
    with log_context(task_id=42, worker="worker1"):
        line = plain_formatter().format(record("task added"))

    assert line.endswith(" INFO worker_agent.test [task=42 worker=worker1] task added")


def test_plain_lines_show_a_dash_for_ids_nobody_set() -> None:
    assert "[task=- worker=-] hello" in plain_formatter().format(record())
    assert "[task=3 worker=-] hello" in plain_formatter().format(record(task_id=3, worker=None))
    with log_context(worker="worker1"):
        assert "[task=- worker=worker1] hello" in plain_formatter().format(record())


def test_json_lines_carry_task_id_and_worker_fields_null_when_unset() -> None:
    with log_context(task_id=7, worker="nas"):
        inside = json.loads(JsonFormatter().format(record()))
    outside = json.loads(JsonFormatter().format(record()))

    assert (inside["task_id"], inside["worker"]) == (7, "nas")
    assert (outside["task_id"], outside["worker"]) == (None, None)


def test_secrets_are_still_redacted_in_a_line_with_ids() -> None:
    with log_context(task_id=3, worker="w"):
        made = record("joined with %s", "acj_00ff00ff_topsecret")

    plain, line = plain_formatter().format(made), json.loads(JsonFormatter().format(made))
    assert plain.endswith("[task=3 worker=w] joined with acj_00ff00ff_[redacted]")
    assert line["message"] == "joined with acj_00ff00ff_[redacted]" and line["task_id"] == 3


def test_ids_a_logging_call_passes_itself_win_over_the_context() -> None:
    with log_context(task_id=1, worker="reporting"):
        made = record(task_id=9, worker="assigned")

    assert (made.task_id, made.worker) == (9, "assigned")  # type: ignore[attr-defined]


def test_the_context_is_restored_after_a_block_even_when_it_raises() -> None:
    with log_context(worker="w1"):
        with pytest.raises(RuntimeError), log_context(task_id=5):
            assert current_log_context() == {"task_id": 5, "worker": "w1"}
            raise RuntimeError("boom")
        assert current_log_context() == {"worker": "w1"}
    assert current_log_context() == {}


def test_a_thread_does_not_see_the_context_of_its_starter_but_sees_the_defaults() -> None:
    context_filter = LogContextFilter({"worker": "agent-name"})
    seen: list[logging.LogRecord] = []

    def in_thread() -> None:
        made = logging.LogRecord("t", logging.INFO, __file__, 1, "x", None, None)
        context_filter.filter(made)
        seen.append(made)

    with log_context(task_id=11):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()

    assert getattr(seen[0], "task_id", None) is None
    assert seen[0].worker == "agent-name"  # type: ignore[attr-defined]


@dataclass
class Entry:
    task_id: int


def test_the_decorator_takes_the_task_from_a_task_id_keyword_or_an_entry() -> None:
    @with_task_log_context
    def by_keyword(*, task_id: int) -> dict[str, object]:
        return current_log_context()

    @with_task_log_context
    def by_entry(owner: object, entry: Entry) -> dict[str, object]:
        return current_log_context()

    assert by_keyword(task_id=4) == {"task_id": 4}
    assert by_entry(object(), Entry(task_id=8)) == {"task_id": 8}
    assert current_log_context() == {}


def test_a_configured_process_prints_ids_and_redacts(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from worker_agent.logs import configure_logging\n"
        "from worker_agent.logcontext import log_context\n"
        "configure_logging('INFO', context={'worker': 'nas'})\n"
        "logging.getLogger('worker_agent.x').info('starting')\n"
        "with log_context(task_id=12):\n"
        "    logging.getLogger('worker_agent.x').info('added with token:s3cret')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    first, second = result.stderr.splitlines()
    assert first.endswith("worker_agent.x [task=- worker=nas] starting")
    assert second.endswith("worker_agent.x [task=12 worker=nas] added with token:[redacted]")


def test_the_agent_names_itself_and_the_task_on_every_line_it_logs(
    tmp_path: Path, rangeserver, files
) -> None:
    make_random_file(files / "data.bin", 200_000, seed=3)
    log_file = tmp_path / "worker.log"
    with StubDispatcher(heartbeat_interval=0.3) as dispatcher:
        dispatcher.assignments = [
            {
                "task_id": 31,
                "epoch": 1,
                "kind": "http",
                "uris": [rangeserver.url("data.bin")],
                "options": {},
                "state": "run",
            }
        ]
        config = tmp_path / "worker.json"
        config.write_text(
            json.dumps(
                {
                    "dispatcher": {"url": dispatcher.url, "api_key": "join-secret"},
                    "aria2": {"port": 0, "download_dir": str(tmp_path / "downloads")},
                    "worker": {"name": "logctx-agent"},
                    "log_file": str(log_file),
                }
            )
        )
        agent = subprocess.Popen(
            [sys.executable, "-m", "worker_agent", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, "ARIACLUSTER_LOG_FORMAT": "plain"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            dispatcher.wait_for("/tasks/31/completed")
            deadline = time.monotonic() + 20
            while "completed accepted" not in log_file.read_text():
                assert time.monotonic() < deadline, log_file.read_text()
                time.sleep(0.05)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)

    lines = log_file.read_text().splitlines()
    assert lines and all("worker=logctx-agent]" in line for line in lines), lines
    about_the_task = [line for line in lines if "task 31 " in line]
    assert any("added to aria2" in line for line in about_the_task)
    assert any("completed accepted" in line for line in about_the_task)
    assert all("[task=31 worker=logctx-agent]" in line for line in about_the_task), about_the_task
