"""A batch of deliveries (`webhook_deliver_due`): one bad row cannot stop the others or leave
them claimed, the batch ends within its bound, the claim lasts longer than that bound, and a
row never gets more than `webhooks.max_attempts` sends. Real receivers on 127.0.0.1; time is
moved by setting timestamps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dispatcher import webhooks
from dispatcher.models import Task, TaskStatus, WebhookDelivery, WebhookStatus
from dispatcher.tests.webhook_receiver import Receiver, receiver
from dispatcher.webhook_transport import DEADLINE_SLACK
from dispatcher.webhooks import SEND_THREADS, webhook_deliver_due
from worker_agent.urlpolicy import UrlPolicy

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db

SECRET = "global-webhook-secret-0123456789abcdefgh"


@pytest.fixture
def hooks(configure: Callable[..., None], receiver: Receiver) -> Receiver:
    configure(
        security={"url_policy": UrlPolicy()},
        webhooks={"urls": (receiver.url(),), "secret": SECRET},
    )
    return receiver


def queue(*urls: str, **fields: Any) -> list[WebhookDelivery]:
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    return [
        WebhookDelivery.objects.create(event="task.completed", task=task, url=url, **fields)
        for url in urls
    ]


def test_a_url_that_cannot_be_sent_fails_alone_and_the_rest_of_the_batch_is_delivered(
    hooks: Receiver,
) -> None:
    # Stored before URLs were checked for non-ASCII: http.client cannot encode its path.
    first, bad, last = queue(hooks.url("/a"), hooks.url("/café"), hooks.url("/b"))

    assert webhook_deliver_due() == 3

    rows = {d.pk: d for d in WebhookDelivery.objects.all()}
    assert rows[first.pk].status == rows[last.pk].status == WebhookStatus.DELIVERED
    assert (rows[bad.pk].status, rows[bad.pk].attempts) == (WebhookStatus.FAILED, 1)
    assert "UnicodeEncodeError" in rows[bad.pk].last_error
    assert {d.claim_token for d in rows.values()} == {""}
    assert sorted(r.path for r in hooks.requests) == ["/a", "/b"]


def test_an_outcome_that_cannot_be_recorded_leaves_the_others_recorded(
    hooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, *others = queue(hooks.url("/1"), hooks.url("/2"), hooks.url("/3"))
    record = webhooks._record

    def record_failing_once(delivery: WebhookDelivery, token: str, outcome: Any) -> str:
        # The fault we cannot produce for real: the database refuses one row's write.
        if delivery.pk == broken.pk:
            raise RuntimeError("the database went away for this row")
        return record(delivery, token, outcome)

    monkeypatch.setattr(webhooks, "_record", record_failing_once)

    assert webhook_deliver_due() == 3

    for delivery in others:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.claim_token) == (WebhookStatus.DELIVERED, "")
    broken.refresh_from_db()
    assert broken.status == WebhookStatus.PENDING and broken.claim_token != ""
    assert broken.next_attempt_at > timezone.now(), "sent again only when its claim runs out"


def test_a_row_whose_last_attempt_never_reported_back_fails_without_another_send(
    hooks: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhooks={"max_attempts": 3})
    # Claimed for its third attempt by a sender that died; the claim has run out.
    (spent,) = queue(hooks.url(), attempts=3, claim_token="dead" * 8, last_error="HTTP 503: x")
    (fresh,) = queue(hooks.url("/fresh"))

    assert webhook_deliver_due() == 1

    spent.refresh_from_db()
    assert (spent.status, spent.attempts, spent.claim_token) == (WebhookStatus.FAILED, 3, "")
    assert "attempt 3 was never recorded" in spent.last_error
    assert [r.path for r in hooks.requests] == ["/fresh"]
    fresh.refresh_from_db()
    assert fresh.status == WebhookStatus.DELIVERED


def test_a_claim_outlasts_every_wave_of_its_batch(
    hooks: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhooks={"timeout": 60.0})
    queue(*[hooks.url(f"/{i}") for i in range(webhooks.BATCH_SIZE)])
    now = timezone.now()

    _, claimed = webhooks._claim_due(now, webhooks.BATCH_SIZE)

    # 20 rows, 8 at a time: three waves of sends, each up to the timeout.
    waves = math.ceil(webhooks.BATCH_SIZE / SEND_THREADS)
    assert waves == 3
    ends = {d.next_attempt_at for d in claimed}
    assert len(claimed) == webhooks.BATCH_SIZE and len(ends) == 1
    assert ends.pop() - now >= timedelta(seconds=waves * 60.0)


def test_a_batch_to_a_dripping_receiver_ends_within_its_bound(
    hooks: Receiver, configure: Callable[..., None]
) -> None:
    configure(webhooks={"timeout": 0.5})
    # Each answer would take about 5 s, one byte every 0.1 s; 9 rows make two waves of sends.
    hooks.drip = 0.1
    queue(*[hooks.url(f"/{i}") for i in range(SEND_THREADS + 1)])
    started = time.monotonic()

    assert webhook_deliver_due() == SEND_THREADS + 1

    assert time.monotonic() - started < 2 * (0.5 + DEADLINE_SLACK)
    assert set(WebhookDelivery.objects.values_list("status", "last_error")) == {
        (WebhookStatus.PENDING, "timed out: no answer within 0.5 s in total")
    }
