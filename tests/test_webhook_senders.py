"""Four dispatcher processes sending webhooks from one PostgreSQL database at once: every
delivery reaches the receiver exactly once (rows are claimed with SKIP LOCKED and a conditional
UPDATE). Runs outside any test transaction, on a dedicated database created for the test.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dispatcher.tests.webhook_receiver import Receiver, receiver
from tests.support.procs import Helper

__all__ = ["receiver"]

ROOT = Path(__file__).resolve().parent.parent
DELIVERIES = 200
SENDERS = 4

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def _env(tmp_path: Path, database_url: str, hook_url: str) -> dict[str, str]:
    config = {
        "security": {"url_policy": {"allow_loopback": True}},
        "webhooks": {"urls": [hook_url], "timeout": 5},
    }
    (tmp_path / "dispatcher.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ARIACLUSTER_CONFIG")}
    env.update(
        DATABASE_URL=database_url,
        ARIACLUSTER_CONFIG=str(tmp_path / "dispatcher.json"),
        ARIACLUSTER_DATA_DIR=str(tmp_path / "data"),
        ARIACLUSTER_WEBHOOK_SECRET="process-race-secret-0123456789abcdefghij",
        ARIACLUSTER_MAINTENANCE="0",
        DJANGO_SETTINGS_MODULE="ariacluster.settings",
        PYTHONPATH=str(ROOT),
    )
    return env


def _start(*args: str, env: dict[str, str]) -> Helper:
    return Helper("tests.support.webhook_senders", *args, env=env)


def _finish(helper: Helper) -> dict[str, Any]:
    report, err = helper.finish()
    assert "Traceback" not in err, err[-3000:]
    return dict(report)


def test_four_sender_processes_deliver_each_webhook_exactly_once(
    tmp_path: Path, postgres_database: str, receiver: Receiver
) -> None:
    env = _env(tmp_path, postgres_database, receiver.url())
    assert _finish(_start("setup", "--deliveries", str(DELIVERIES), env=env)) == {
        "queued": DELIVERIES
    }
    receiver.delay = 0.01

    senders = [_start("run", env=env) for _ in range(SENDERS)]
    reports = [_finish(p) for p in senders]

    sent = Counter(r.headers["X-Ariacluster-Delivery"] for r in receiver.requests)
    assert len(sent) == DELIVERIES
    assert set(sent.values()) == {1}, "a delivery was sent twice"
    assert sum(r["attempted"] for r in reports) == DELIVERIES
    assert sum(1 for r in reports if r["attempted"]) >= 2, reports
    assert _finish(_start("check", env=env)) == {"by_status_attempts": {"delivered/1": DELIVERIES}}
