"""Several senders at once (each on its own database connection, outside any test transaction)
never send the same delivery twice: each row is claimed by exactly one of them. The maintenance
entry point sends on a thread of its own and returns at once.

Runs on SQLite (IMMEDIATE transactions) in the SQLite pass and on PostgreSQL (SKIP LOCKED) in
the PostgreSQL pass; `tests/test_webhook_senders.py` does the same with separate processes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection

from dispatcher import webhooks
from dispatcher.models import Task, TaskStatus, WebhookDelivery, WebhookStatus
from dispatcher.tests.webhook_receiver import Receiver, receiver
from dispatcher.webhooks import webhook_deliver_due, webhook_deliver_due_soon
from worker_agent.urlpolicy import UrlPolicy

__all__ = ["receiver"]

SECRET = "global-webhook-secret-0123456789abcdefgh"
DELIVERIES = 60
SENDERS = 4


@pytest.mark.django_db(transaction=True)
def test_four_concurrent_senders_deliver_each_row_exactly_once(
    receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure(
        security={"url_policy": UrlPolicy()},
        webhooks={"urls": (receiver.url(),), "secret": SECRET},
    )
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(event="task.completed", task=task, url=receiver.url(), payload={"i": i})
        for i in range(DELIVERIES)
    )
    # Slow answers keep claims open while the other senders look for work.
    receiver.delay = 0.02
    start = threading.Barrier(SENDERS)
    attempted: Counter[str] = Counter()
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            start.wait()
            while True:
                sent = webhook_deliver_due(limit=5)
                if not sent:
                    break
                attempted[threading.current_thread().name] += sent
        except Exception as exc:  # noqa: BLE001 - reported below, else a thread loses it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    sent = Counter(r.headers["X-Ariacluster-Delivery"] for r in receiver.requests)
    assert len(sent) == DELIVERIES
    assert set(sent.values()) == {1}, "a delivery was sent twice"
    assert sum(attempted.values()) == DELIVERIES
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (WebhookStatus.DELIVERED, 1)
    }
    assert len(attempted) >= 2, f"only one sender found work: {attempted}"


@pytest.mark.django_db(transaction=True)
def test_the_maintenance_entry_point_sends_on_its_own_thread_and_returns_at_once(
    receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure(
        security={"url_policy": UrlPolicy()},
        webhooks={"urls": (receiver.url(),), "secret": SECRET},
    )
    assert webhook_deliver_due_soon() == 0, "nothing due: no thread work at all"
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    WebhookDelivery.objects.create(event="task.completed", task=task, url=receiver.url())
    receiver.delay = 0.5

    started = time.monotonic()
    assert webhook_deliver_due_soon() == 1
    assert time.monotonic() - started < 0.3, "the caller does not wait for the receiver"
    assert webhook_deliver_due_soon() == 0, "one batch at a time per process"
    batch = webhooks._background_batch
    assert batch is not None
    assert batch.result(timeout=10) == 1

    assert WebhookDelivery.objects.get().status == WebhookStatus.DELIVERED
    assert len(receiver.requests) == 1
