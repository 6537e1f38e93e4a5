"""Invariant: placement is atomic under concurrency (ARCHITECTURE.md).

Several separate processes place the same 5,000 pending tasks on 40 workers at once, while also
completing tasks to free slots for each other. Afterwards every task was assigned exactly once
(one ASSIGNED event, epoch 1), no worker was ever over `max_tasks`, no process crashed, and
SQLite never answered "database is locked". Runs outside any test transaction, on a real file /
a dedicated PostgreSQL database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Helper

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 40
MAX_TASKS = 120
TASKS = 5000

pytestmark = pytest.mark.timeout(120)


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    config = {
        "database": {"type": "sqlite", "path": str(tmp_path / "race.db")},
        # The workers' one heartbeat must outlive the run: nothing here renews it.
        "worker_management": {"heartbeat_interval": 10, "heartbeat_timeout": 3600},
    }
    (tmp_path / "dispatcher.json").write_text(json.dumps(config))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "ARIACLUSTER_CONFIG")
    }
    env.update(
        ARIACLUSTER_CONFIG=str(tmp_path / "dispatcher.json"),
        ARIACLUSTER_DATA_DIR=str(tmp_path / "data"),
        ARIACLUSTER_MAINTENANCE="0",
        DJANGO_SETTINGS_MODULE="ariacluster.settings",
        PYTHONPATH=str(ROOT),
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _race(*args: str, env: dict[str, str]) -> Helper:
    return Helper("tests.support.placement_race", *args, env=env)


def _finish(helper: Helper) -> tuple[dict[str, Any], str]:
    report, err = helper.finish()
    return dict(report), err


def _assert_placement_is_atomic(env: dict[str, str], processes: int) -> None:
    _finish(
        _race(
            "setup",
            "--workers",
            str(WORKERS),
            "--max-tasks",
            str(MAX_TASKS),
            "--tasks",
            str(TASKS),
            env=env,
        )
    )

    racers = [
        _race("run", "--complete", "10", "--deadline", "60", env=env) for _ in range(processes)
    ]
    results = [_finish(p) for p in racers]

    for report, stderr in results:
        assert "database is locked" not in stderr.lower()
        assert "Traceback" not in stderr, stderr[-3000:]
        assert report["over_max"] == [], report
    check, _ = _finish(_race("check", env=env))
    assert check["tasks"] == TASKS
    assert check["statuses"].get("pending", 0) == 0, check
    assert check["tasks_not_assigned_once"] == 0, check
    assert check["assigned_events_not_epoch_1"] == 0, check
    assert check["tasks_not_epoch_1"] == 0, check
    assert check["tasks_completed_twice"] == 0, check
    assert check["completed_events"] >= TASKS - WORKERS * MAX_TASKS, check
    assert check["replay_over_max"] == [], check
    assert check["final_over_max"] == {}, check
    # Every process took part, so the race was real.
    assert sum(1 for report, _ in results if report["passes"] > 0) == processes


def test_placement_is_atomic_across_four_processes_on_sqlite(tmp_path: Path) -> None:
    _assert_placement_is_atomic(_env(tmp_path, None), processes=4)


@pytest.mark.postgres
def test_placement_is_atomic_across_eight_processes_on_postgresql(
    tmp_path: Path, postgres_database: str
) -> None:
    _assert_placement_is_atomic(_env(tmp_path, postgres_database), processes=8)
