"""Webhooks: the outbox row is written with the task's last state change, and the sender posts it,
signed, to a real HTTP server on 127.0.0.1, retrying with backoff until it is delivered or the
attempts run out. Time is moved by setting `next_attempt_at`, never by sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher import leases, services, webhook_transport, webhooks
from dispatcher.keys import api_key_create, api_key_revoke, api_key_rotate_webhook_secret
from dispatcher.models import ApiKey, Task, TaskStatus, WebhookDelivery, WebhookStatus
from dispatcher.placement import task_assign_pending
from dispatcher.tests.webhook_receiver import Receiver, receiver
from dispatcher.webhooks import webhook_deliver_due, webhook_retry_now
from worker_agent.urlpolicy import UrlPolicy
from workers_app.services import Registration

__all__ = ["receiver"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_startup_grace")]

SECRET = "global-webhook-secret-0123456789abcdefgh"
FILES = [{"path": "task-1/a.iso", "size": 10, "sha256": "ab" * 32}]


@pytest.fixture
def hooks(configure: Callable[..., None], receiver: Receiver) -> Receiver:
    """Webhooks on: the receiver's URL is the global URL, loopback allowed (as in tests)."""
    configure(
        security={"url_policy": UrlPolicy()},
        webhooks={"urls": (receiver.url(),), "secret": SECRET},
    )
    return receiver


def leased(registration: Registration, url: str = "http://e.x/a.iso", **fields: Any) -> Task:
    task = services.task_create(url=url, **fields)
    task_assign_pending()
    task.refresh_from_db()
    assert task.worker_id == registration.worker.pk
    return task


def complete(registration: Registration, task: Task) -> Task:
    return leases.task_report_completed(
        worker=registration.worker, task_id=task.pk, epoch=task.epoch, files=FILES
    )


def make_due() -> None:
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (docs/webhooks.md)."""
    signed = headers["X-Ariacluster-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Ariacluster-Signature"])


def test_a_completed_task_is_posted_signed_with_the_global_secret(
    hooks: Receiver, registration: Registration
) -> None:
    task = complete(registration, leased(registration, priority="high"))

    assert webhook_deliver_due() == 1

    (request,) = hooks.requests
    delivery = WebhookDelivery.objects.get()
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Ariacluster-Event"] == "task.completed"
    assert request.headers["X-Ariacluster-Delivery"] == str(delivery.uuid)
    assert verify(SECRET, request.headers, request.body)
    assert not verify("another-secret", request.headers, request.body)
    body = request.json
    assert (body["event"], body["delivery"], body["attempt"]) == (
        "task.completed",
        str(delivery.uuid),
        1,
    )
    assert body["task"]["id"] == task.pk
    assert body["task"]["status"] == "completed"
    assert body["task"]["worker"] == "worker1"
    assert body["task"]["files"] == FILES
    assert body["task"]["priority"] == "high"
    assert body["task"]["error"] is None
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        WebhookStatus.DELIVERED,
        1,
        204,
    )
    assert delivery.delivered_at is not None and delivery.claim_token == ""


def test_a_tampered_body_or_timestamp_fails_verification(
    hooks: Receiver, registration: Registration
) -> None:
    complete(registration, leased(registration))
    webhook_deliver_due()
    (request,) = hooks.requests

    later = {**request.headers, "X-Ariacluster-Timestamp": "1"}
    assert not verify(SECRET, later, request.body)
    assert not verify(SECRET, request.headers, request.body.replace(b"completed", b"failed"))


def test_a_permanently_failed_task_is_posted_as_task_failed_with_its_error(
    hooks: Receiver, registration: Registration
) -> None:
    task = leased(registration)

    leases.task_report_failed(
        worker=registration.worker,
        task_id=task.pk,
        epoch=task.epoch,
        error_code=3,
        error_message="404 not found",
    )
    webhook_deliver_due()

    (request,) = hooks.requests
    assert request.headers["X-Ariacluster-Event"] == "task.failed"
    sent = request.json["task"]
    assert sent["status"] == "failed"
    assert sent["error"]["class"] == "permanent"
    assert sent["error"]["code"] == 3
    assert sent["files"] == []


def test_a_failure_with_retries_left_is_not_announced_until_they_run_out(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"max_retries": 1, "retry_delay": 0})
    task = leased(registration)

    leases.task_report_failed(
        worker=registration.worker,
        task_id=task.pk,
        epoch=task.epoch,
        error_code=2,
        error_message="timeout",
    )
    assert WebhookDelivery.objects.count() == 0

    task_assign_pending()
    task.refresh_from_db()
    leases.task_report_failed(
        worker=registration.worker,
        task_id=task.pk,
        epoch=task.epoch,
        error_code=2,
        error_message="timeout",
    )
    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["task.failed"]


def test_a_poison_task_failed_by_lease_expiry_is_announced(
    hooks: Receiver,
    registration: Registration,
    configure: Callable[..., None],
    make_live: Callable[..., Any],
) -> None:
    configure(task_assignment={"max_lease_losses": 1})
    task = leased(registration)
    make_live(registration.worker, at=timezone.now() - timedelta(seconds=31))

    leases.lease_expire_stale()

    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "task.failed"
    assert delivery.payload["id"] == task.pk
    assert delivery.payload["status"] == "failed"
    assert "poison" in delivery.payload["error"]["message"]


def test_a_repeated_completion_report_queues_one_delivery(
    hooks: Receiver, registration: Registration
) -> None:
    task = leased(registration)

    complete(registration, task)
    complete(registration, task)

    assert WebhookDelivery.objects.count() == 1


def test_the_delivery_is_rolled_back_with_the_state_change(
    hooks: Receiver, registration: Registration
) -> None:
    task = leased(registration)

    with pytest.raises(RuntimeError), transaction.atomic():
        complete(registration, task)
        raise RuntimeError("the commit never happens")

    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    assert WebhookDelivery.objects.count() == 0


def test_nothing_is_queued_without_webhook_urls(registration: Registration) -> None:
    complete(registration, leased(registration))

    assert WebhookDelivery.objects.count() == 0
    assert webhook_deliver_due() == 0


def test_only_the_configured_events_are_queued(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(webhooks={"events": ("task.failed",)})

    complete(registration, leased(registration))

    assert WebhookDelivery.objects.count() == 0


def test_a_500_is_retried_after_a_backoff_with_jitter_then_delivered(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(webhooks={"backoff": 100.0})
    complete(registration, leased(registration))
    hooks.fail_next(1)
    before = timezone.now()

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookStatus.PENDING
    assert (delivery.attempts, delivery.last_status_code) == (1, 500)
    assert "receiver told to fail" in delivery.last_error
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 50 <= wait <= 101
    assert webhook_deliver_due() == 0, "not due yet"

    make_due()
    webhook_deliver_due()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        WebhookStatus.DELIVERED,
        2,
        204,
    )
    assert delivery.last_error == ""
    first, second = hooks.requests
    assert first.headers["X-Ariacluster-Delivery"] == second.headers["X-Ariacluster-Delivery"]
    assert (first.json["attempt"], second.json["attempt"]) == (1, 2)
    assert verify(SECRET, second.headers, second.body)


def test_the_backoff_doubles_and_is_capped() -> None:
    from django.conf import settings

    config = settings.ARIACLUSTER.webhooks
    waits = [webhooks.retry_wait(n) for n in range(1, 20)]

    assert config.backoff * 0.5 <= waits[0] <= config.backoff
    assert config.backoff * 4 * 0.5 <= waits[2] <= config.backoff * 4
    assert max(waits) <= config.backoff_max


def test_a_delivery_gives_up_after_max_attempts(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(webhooks={"max_attempts": 3})
    complete(registration, leased(registration))
    hooks.fail_next(100, status=503)

    for _ in range(5):
        make_due()
        webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        WebhookStatus.FAILED,
        3,
        503,
    )
    assert delivery.last_error.startswith("HTTP 503")
    assert len(hooks.requests) == 3


def test_a_receiver_that_answers_too_late_is_retried(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(webhooks={"timeout": 0.3})
    complete(registration, leased(registration))
    hooks.delay = 1.0

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookStatus.PENDING
    assert delivery.last_status_code is None
    assert "timed out" in delivery.last_error


def test_a_refused_connection_is_retried(
    configure: Callable[..., None], registration: Registration
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    configure(
        security={"url_policy": UrlPolicy()},
        webhooks={"urls": (f"http://127.0.0.1:{closed_port}/",), "secret": SECRET},
    )
    complete(registration, leased(registration))

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookStatus.PENDING
    assert "ConnectionRefusedError" in delivery.last_error


def test_redirects_are_not_followed(hooks: Receiver, registration: Registration) -> None:
    hooks.redirect_to = "http://169.254.169.254/latest/meta-data/"
    complete(registration, leased(registration))

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert len(hooks.requests) == 1
    assert delivery.status == WebhookStatus.PENDING
    assert delivery.last_status_code == 302
    assert "redirects are not followed" in delivery.last_error


def test_a_url_the_policy_denies_at_send_time_fails_at_once_without_a_request(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    complete(registration, leased(registration))
    configure(security={"url_policy": UrlPolicy(allow_loopback=False)})

    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert hooks.requests == []
    assert (delivery.status, delivery.attempts) == (WebhookStatus.FAILED, 1)
    assert "loopback" in delivery.last_error


def test_a_host_name_that_resolves_to_a_denied_address_is_refused_after_dns(
    registration: Registration,
    configure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(webhooks={"urls": ("http://hooks.example.test/in",), "secret": SECRET})
    complete(registration, leased(registration))

    def rebinding_dns(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        # The one fault we cannot produce for real: a DNS answer pointing at cloud metadata.
        assert host == "hooks.example.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(webhook_transport.socket, "getaddrinfo", rebinding_dns)
    webhook_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookStatus.FAILED
    assert "hooks.example.test resolves to 169.254.169.254" in delivery.last_error


def test_user_info_in_the_url_is_sent_as_basic_auth(
    receiver: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    url = receiver.url("/in").replace("://", "://hook:p%40ss@")
    configure(webhooks={"urls": (url,), "secret": SECRET})
    complete(registration, leased(registration))

    webhook_deliver_due()

    (request,) = receiver.requests
    assert request.headers["Authorization"] == "Basic aG9vazpwQHNz"  # hook:p@ss


def test_a_key_url_hears_only_about_tasks_created_with_that_key(
    receiver: Receiver, registration: Registration
) -> None:
    key, plaintext = api_key_create(name="notified", webhook_url=receiver.url("/key"))
    _, other = api_key_create(name="quiet")
    mine = APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/mine.iso"}, format="json", HTTP_X_API_KEY=plaintext
    )
    theirs = APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/theirs.iso"}, format="json", HTTP_X_API_KEY=other
    )
    batch = APIClient().post(
        "/api/v1/tasks/batch/",
        {"tasks": [{"url": "http://e.x/b1.iso"}]},
        format="json",
        HTTP_X_API_KEY=plaintext,
    )
    assert (mine.status_code, theirs.status_code, batch.status_code) == (201, 201, 201)
    task_assign_pending()
    for task in Task.objects.all():
        complete(registration, task)

    webhook_deliver_due()

    assert sorted(r.json["task"]["id"] for r in receiver.requests) == sorted(
        [mine.json()["id"], batch.json()["tasks"][0]["id"]]
    )
    for request in receiver.requests:
        assert request.path == "/key"
        assert verify(key.webhook_secret, request.headers, request.body)
        assert not verify(SECRET, request.headers, request.body)


def test_a_key_url_and_the_global_urls_each_get_their_own_signed_copy(
    hooks: Receiver, registration: Registration
) -> None:
    key, plaintext = api_key_create(name="both", webhook_url=hooks.url("/key"))
    APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/a.iso"}, format="json", HTTP_X_API_KEY=plaintext
    )
    task_assign_pending()
    complete(registration, Task.objects.get())

    webhook_deliver_due()

    by_path = {r.path: r for r in hooks.requests}
    assert set(by_path) == {"/hook", "/key"}
    assert verify(SECRET, by_path["/hook"].headers, by_path["/hook"].body)
    assert verify(key.webhook_secret, by_path["/key"].headers, by_path["/key"].body)


def test_a_rotated_key_secret_signs_the_retries(
    receiver: Receiver, registration: Registration
) -> None:
    key, plaintext = api_key_create(name="rotating", webhook_url=receiver.url("/key"))
    APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/a.iso"}, format="json", HTTP_X_API_KEY=plaintext
    )
    task_assign_pending()
    complete(registration, Task.objects.get())
    receiver.fail_next(1)
    webhook_deliver_due()

    new_secret = api_key_rotate_webhook_secret(key=key)
    make_due()
    webhook_deliver_due()

    assert verify(new_secret, receiver.requests[1].headers, receiver.requests[1].body)


def test_a_revoked_keys_url_is_not_notified(receiver: Receiver, registration: Registration) -> None:
    key, plaintext = api_key_create(name="gone", webhook_url=receiver.url("/key"))
    APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/a.iso"}, format="json", HTTP_X_API_KEY=plaintext
    )
    api_key_revoke(key=key)
    task_assign_pending()
    complete(registration, Task.objects.get())

    assert WebhookDelivery.objects.count() == 0


def test_an_expired_keys_url_is_not_notified(
    receiver: Receiver, registration: Registration
) -> None:
    key, plaintext = api_key_create(name="expiring", webhook_url=receiver.url("/key"))
    APIClient().post(
        "/api/v1/tasks/", {"url": "http://e.x/a.iso"}, format="json", HTTP_X_API_KEY=plaintext
    )
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    task_assign_pending()
    complete(registration, Task.objects.get())

    assert WebhookDelivery.objects.count() == 0


def test_retry_now_gives_a_failed_delivery_its_attempts_again(
    hooks: Receiver, registration: Registration, configure: Callable[..., None]
) -> None:
    configure(webhooks={"max_attempts": 1})
    complete(registration, leased(registration))
    hooks.fail_next(1)
    webhook_deliver_due()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookStatus.FAILED

    assert webhook_retry_now(deliveries=WebhookDelivery.objects.all()) == 1
    webhook_deliver_due()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookStatus.DELIVERED, 1)
    assert webhook_retry_now(deliveries=[delivery.pk]) == 0, "delivered stays delivered"


def test_a_delivery_whose_claim_ran_out_is_recorded_by_the_new_sender_only(
    hooks: Receiver, registration: Registration
) -> None:
    complete(registration, leased(registration))
    token, (claimed,) = webhooks._claim_due(timezone.now(), 10)
    # The first sender stalls past its claim; a second one takes the row over and delivers.
    make_due()
    webhook_deliver_due()

    status = webhooks._record(claimed, token, webhook_transport.Outcome(False, 500, "late"))

    assert status == "lost"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (WebhookStatus.DELIVERED, 2)


def test_the_payload_is_the_task_at_the_event_not_later(
    hooks: Receiver, registration: Registration
) -> None:
    task = leased(registration)
    leases.task_report_failed(
        worker=registration.worker,
        task_id=task.pk,
        epoch=task.epoch,
        error_code=3,
        error_message="404",
    )
    services.task_retry(task=Task.objects.get(pk=task.pk))

    webhook_deliver_due()

    assert hooks.requests[0].json["task"]["status"] == "failed"


def test_the_body_is_compact_sorted_json(hooks: Receiver, registration: Registration) -> None:
    complete(registration, leased(registration))

    webhook_deliver_due()

    body = hooks.requests[0].body
    assert body == json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True).encode()


def test_the_receiver_example_in_the_docs_accepts_a_real_delivery_and_nothing_else(
    hooks: Receiver, registration: Registration, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    (example,) = [block for block in doc.split("```python\n")[1:]]
    monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {"__name__": "webhook_receiver_example"}
    exec(example.split("```")[0], namespace)
    verify_as_documented = namespace["verify"]
    complete(registration, leased(registration))
    webhook_deliver_due()
    (request,) = hooks.requests
    sent_at = int(request.headers["X-Ariacluster-Timestamp"])

    assert verify_as_documented(SECRET.encode(), request.headers, request.body)
    assert not verify_as_documented(b"wrong", request.headers, request.body)
    assert not verify_as_documented(SECRET.encode(), request.headers, request.body + b" ")
    assert not verify_as_documented(
        SECRET.encode(), request.headers, request.body, now=sent_at + 301
    )
