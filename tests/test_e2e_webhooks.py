"""Webhooks end to end: a real dispatcher process delivers signed notifications on its own.

The maintenance loop of `manage.py serve` (not a direct call) picks the outbox rows up; the
receiver is a real HTTP server on 127.0.0.1 that fails its first answer, so the retry path
runs too. The signature is checked the way docs/webhooks.md tells receivers to check it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest

from dispatcher.tests.webhook_receiver import Receiver
from tests.support.e2e import running_cluster

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0123456789abcdef0123456789"


def _signed_by_secret(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers["X-Ariacluster-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), headers["X-Ariacluster-Signature"])


def test_a_served_dispatcher_signs_and_retries_completed_and_failed_notifications(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    receiver.start()
    receiver.fail_next(1)
    config = {
        "webhooks": {"urls": [receiver.url()], "backoff": 0.5, "backoff_max": 1},
        "task_assignment": {"max_retries": 0},
    }
    try:
        with running_cluster(
            tmp_path, workers=1, config=config, env={"ARIACLUSTER_WEBHOOK_SECRET": SECRET}
        ) as cluster:
            good = cluster.api.post("/api/v1/tasks/", {"url": cluster.add_file("a.bin", 50_000)})
            bad = cluster.api.post("/api/v1/tasks/", {"url": cluster.server.url("missing.bin")})
            cluster.api.wait_for(good["id"], {"completed"})
            cluster.api.wait_for(bad["id"], {"failed"})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                events = {(r.json["event"], r.json["task"]["id"]) for r in receiver.requests}
                wanted = {("task.completed", good["id"]), ("task.failed", bad["id"])}
                # Both events seen, and the one answered 500 sent again.
                if wanted <= events and len(receiver.requests) >= 3:
                    break
                time.sleep(0.2)
    finally:
        receiver.stop()

    delivered = {(r.json["event"], r.json["task"]["id"]) for r in receiver.requests}
    assert ("task.completed", good["id"]) in delivered
    assert ("task.failed", bad["id"]) in delivered
    # The first answer was a 500: one notification was sent twice under the same delivery id.
    ids = [r.headers["X-Ariacluster-Delivery"] for r in receiver.requests]
    assert len(ids) == 3 and len(set(ids)) == 2
    assert all(_signed_by_secret(r.headers, r.body) for r in receiver.requests)
    failed = next(r.json for r in receiver.requests if r.json["event"] == "task.failed")
    assert failed["task"]["status"] == "failed"
