"""Webhooks: tell other systems when a task completes or fails, reliably and verifiably.

Outbox: `webhook_enqueue_task_event` writes one `WebhookDelivery` row per URL inside the
transaction that finished the task (every such write in `dispatcher.leases` calls it), so a
crash can never lose an event or announce one that was rolled back. `webhook_deliver_due`
(started by the maintenance pass through `webhook_deliver_due_soon`, on a thread of its own so a
slow receiver never holds up placement) claims a bounded batch of due rows, POSTs them outside any
transaction, and records each outcome; failures are retried with exponential backoff and jitter
until `webhooks.max_attempts`. Delivery is at least once: receivers dedupe by the delivery id.

Each POST carries the JSON body, ``X-Ariacluster-Event``, ``X-Ariacluster-Delivery`` (the row's
uuid), ``X-Ariacluster-Timestamp`` (Unix seconds) and ``X-Ariacluster-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the global secret (configured URLs) or
the API key's own secret (the key's URL). See docs/webhooks.md for a receiver.

The URL policy (`security.url_policy`) is checked when a URL is configured and again right
before each send, after DNS; how one POST goes over the wire, within `webhooks.timeout` in total,
is `dispatcher.webhook_transport`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from ariacluster.config import check_webhook_url
from dispatcher.models import (
    ApiKey,
    Priority,
    Task,
    TaskStatus,
    WebhookDelivery,
    WebhookStatus,
)
from dispatcher.redaction import redact_uri, webhook_display_url
from dispatcher.webhook_transport import DEADLINE_SLACK, Outcome, SignedRequest, webhook_post

logger = logging.getLogger(__name__)

EVENT_BY_STATUS: dict[str, str] = {
    TaskStatus.COMPLETED: "task.completed",
    TaskStatus.FAILED: "task.failed",
}
# One call of webhook_deliver_due sends at most this many, this many at a time.
BATCH_SIZE = 20
SEND_THREADS = 8
# A claim outlives the longest its batch can take (see `claim_duration`) by this much.
CLAIM_MARGIN = timedelta(seconds=30)
USER_AGENT = "ariacluster-webhooks/1"
SECRET_TAG = "whsec"


# Configuration-time checks and keys' secrets ---------------------------------------------------


def webhook_url_check(url: Any) -> str:
    """The cleaned URL, or `ValidationError` ({"webhook_url": [...]}) saying why it is refused."""
    try:
        return check_webhook_url(url, settings.ARIACLUSTER.security.url_policy)
    except ValueError as exc:
        raise ValidationError({"webhook_url": [str(exc)]}) from None


def webhook_secret_new() -> str:
    """A fresh per-key signing secret (``whsec_`` + 256 random bits)."""
    return f"{SECRET_TAG}_{secrets.token_urlsafe(32)}"


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Ariacluster-Signature`` value: HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


# The outbox ------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_payload(task: Task) -> dict[str, Any]:
    """What a receiver learns about the task (URIs with credentials masked)."""
    error = None
    if task.status == TaskStatus.FAILED:
        error = {
            "code": task.error_code,
            "class": task.error_class,
            "message": task.error_message,
        }
    return {
        "id": task.pk,
        "name": task.name,
        "status": task.status,
        "kind": task.kind,
        "uris": [redact_uri(str(u)) for u in task.uris or []],
        "tags": list(task.tags or []),
        "priority": Priority(task.priority).label,
        "owner": task.owner.get_username() if task.owner_id and task.owner else None,
        "worker": task.worker.name if task.worker_id and task.worker else None,
        "epoch": task.epoch,
        "attempts": task.attempts,
        "total_length": task.total_length,
        "completed_length": task.completed_length,
        "files": list(task.result or []) if task.status == TaskStatus.COMPLETED else [],
        "error": error,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
    }


def webhook_enqueue_task_event(task: Task, *, now: datetime | None = None) -> int:
    """Queue the task's `task.completed` / `task.failed` notification for every URL that wants it.

    Call inside the transaction that moved `task` (up to date in memory) to completed or
    failed. The targets are `webhooks.urls` and the webhook URL of the API key the task was
    created with (unless that key is revoked or expired), for the events in `webhooks.events`.
    Returns how many deliveries were queued.
    """
    event = EVENT_BY_STATUS.get(task.status)
    config = settings.ARIACLUSTER.webhooks
    if event is None:
        raise ValueError(f"task {task.pk} is {task.status}: no webhook event for that")
    if event not in config.events:
        return 0
    now = now or timezone.now()
    targets: list[tuple[str, ApiKey | None]] = [(url, None) for url in config.urls]
    if task.api_key_id is not None:
        key = (
            ApiKey.objects.filter(pk=task.api_key_id, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
        if key is not None and key.webhook_url:
            targets.append((key.webhook_url, key))
    if not targets:
        return 0
    payload = task_payload(task)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            event=event,
            task=task,
            url=url,
            api_key=key,
            per_key=key is not None,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for url, key in targets
    )
    return len(targets)


# Sending ---------------------------------------------------------------------------------------


def retry_wait(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): doubling from `webhooks.backoff`,
    at most `webhooks.backoff_max`, times a random 0.5-1.0 so failed bursts spread out."""
    config = settings.ARIACLUSTER.webhooks
    ceiling = min(config.backoff_max, config.backoff * 2.0 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def claim_duration(count: int) -> timedelta:
    """How long a claim of `count` rows lasts: longer than the whole batch can take. The rows
    are sent `SEND_THREADS` at a time, each within `webhooks.timeout` (+ the watchdog's slack),
    so in at most ceil(count / SEND_THREADS) waves; `CLAIM_MARGIN` covers signing and recording.
    """
    waves = math.ceil(count / SEND_THREADS)
    per_send = settings.ARIACLUSTER.webhooks.timeout + DEADLINE_SLACK
    return timedelta(seconds=waves * per_send) + CLAIM_MARGIN


def _claim_due(now: datetime, limit: int) -> tuple[str, list[WebhookDelivery]]:
    """Take up to `limit` due rows for this caller; no other sender gets them until the claim
    ends. PostgreSQL skips rows another sender has locked; SQLite's IMMEDIATE transactions
    run claims one after another; the UPDATE re-checks the row is still due either way.

    A due row that has had all its `webhooks.max_attempts` (its last sender stopped before
    recording the outcome) is failed here instead of being sent once more.
    """
    token = uuid.uuid4().hex
    max_attempts = settings.ARIACLUSTER.webhooks.max_attempts
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(
            status=WebhookStatus.PENDING, next_attempt_at__lte=now
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = list(due.values_list("pk", "attempts")[:limit])
        spent = [pk for pk, attempts in rows if attempts >= max_attempts]
        ids = [pk for pk, attempts in rows if attempts < max_attempts]
        if spent:
            _give_up(spent, now, max_attempts)
        if not ids:
            return token, []
        WebhookDelivery.objects.filter(
            pk__in=ids,
            status=WebhookStatus.PENDING,
            next_attempt_at__lte=now,
            attempts__lt=max_attempts,
        ).update(
            claim_token=token,
            next_attempt_at=now + claim_duration(len(ids)),
            attempts=F("attempts") + 1,
            last_attempt_at=now,
        )
    claimed = WebhookDelivery.objects.filter(pk__in=ids, claim_token=token).select_related(
        "api_key"
    )
    return token, list(claimed.order_by("id"))


def _give_up(ids: list[int], now: datetime, max_attempts: int) -> None:
    """Mark due rows that have no attempts left failed (inside the claim's transaction)."""
    rows = WebhookDelivery.objects.filter(
        pk__in=ids, status=WebhookStatus.PENDING, next_attempt_at__lte=now
    )
    for delivery_uuid, task_id, url in rows.values_list("uuid", "task_id", "url"):
        logger.warning(
            "webhook %s of task %s to %s failed for good: attempt %d never reported back",
            delivery_uuid,
            task_id,
            webhook_display_url(url),
            max_attempts,
        )
    rows.update(
        status=WebhookStatus.FAILED,
        claim_token="",
        next_attempt_at=now,
        last_error=(
            f"no attempts left: the outcome of attempt {max_attempts} was never recorded "
            "(its sender stopped)"
        ),
    )


def _signed_request(delivery: WebhookDelivery, now: datetime) -> SignedRequest | Outcome:
    """The signed request for one claimed row, or the outcome if it cannot be signed."""
    if delivery.per_key:
        key = delivery.api_key
        secret = key.webhook_secret if key is not None else ""
        if not secret:
            return Outcome(False, error="the API key (and its secret) was deleted", permanent=True)
    else:
        secret = settings.ARIACLUSTER.webhooks.secret
        if not secret:
            return Outcome(False, error="no webhook secret configured any more", permanent=True)
    body = json.dumps(
        {
            "event": delivery.event,
            "delivery": str(delivery.uuid),
            "attempt": delivery.attempts,
            "created_at": _iso(delivery.created_at),
            "sent_at": _iso(now),
            "task": delivery.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Ariacluster-Event": delivery.event,
        "X-Ariacluster-Delivery": str(delivery.uuid),
        "X-Ariacluster-Timestamp": timestamp,
        "X-Ariacluster-Signature": webhook_signature(secret, timestamp, body),
    }
    return SignedRequest(delivery.url, body, headers)


def _record(delivery: WebhookDelivery, token: str, outcome: Outcome) -> str:
    """Store the outcome if this sender still holds the claim; return the new status."""
    now = timezone.now()
    config = settings.ARIACLUSTER.webhooks
    fields: dict[str, Any] = {
        "claim_token": "",
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        fields.update(status=WebhookStatus.DELIVERED, delivered_at=now, next_attempt_at=now)
    elif outcome.permanent or delivery.attempts >= config.max_attempts:
        fields.update(status=WebhookStatus.FAILED, next_attempt_at=now)
    else:
        wait = timedelta(seconds=retry_wait(delivery.attempts))
        fields.update(status=WebhookStatus.PENDING, next_attempt_at=now + wait)
    held = WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token).update(**fields)
    if not held:
        # Our claim ran out and another sender took the row over: its outcome counts.
        return "lost"
    if fields["status"] == WebhookStatus.FAILED:
        logger.warning(
            "webhook %s of task %s to %s failed for good after %d attempt(s): %s",
            delivery.uuid,
            delivery.task_id,
            webhook_display_url(delivery.url),
            delivery.attempts,
            outcome.error,
        )
    return str(fields["status"])


def webhook_deliver_due(*, limit: int = BATCH_SIZE, now: datetime | None = None) -> int:
    """Send up to `limit` due deliveries (`SEND_THREADS` at a time, each within
    `webhooks.timeout` in total) and record their outcomes; return how many were attempted.

    Safe to call from several processes at once: each row is claimed by one caller, for longer
    than the batch can take. Never call it inside a transaction (the sends would hold it open).
    """
    now = now or timezone.now()
    token, claimed = _claim_due(now, limit)
    if not claimed:
        return 0
    config = settings.ARIACLUSTER.webhooks
    policy = settings.ARIACLUSTER.security.url_policy
    jobs = [_prepare(delivery, now) for delivery in claimed]
    with ThreadPoolExecutor(max_workers=SEND_THREADS) as pool:
        results = [
            pool.submit(webhook_post, job, policy=policy, timeout=config.timeout)
            if isinstance(job, SignedRequest)
            else job
            for job in jobs
        ]
    for delivery, result in zip(claimed, results, strict=True):
        outcome = result if isinstance(result, Outcome) else _result(result)
        try:
            _record(delivery, token, outcome)
        except Exception:
            # The others are still recorded; this row's claim runs out and it is tried again.
            logger.exception("webhook %s: recording the outcome failed", delivery.uuid)
    return len(claimed)


def _prepare(delivery: WebhookDelivery, now: datetime) -> SignedRequest | Outcome:
    """`_signed_request`, or a failed outcome should even that raise (one row cannot stop
    the batch)."""
    try:
        return _signed_request(delivery, now)
    except Exception as exc:
        logger.exception("webhook %s: the request could not be prepared", delivery.uuid)
        return Outcome(False, error=f"could not be prepared: {type(exc).__name__}: {exc}")


def _result(future: Future[Outcome]) -> Outcome:
    try:
        return future.result()
    except Exception as exc:
        # webhook_post never raises; this is the guard should it ever break that promise.
        logger.exception("webhook send crashed")
        return Outcome(False, error=f"{type(exc).__name__}: {exc}")


_background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhooks")
_background_lock = threading.Lock()
_background_batch: Future[int] | None = None


def _deliver_in_background() -> int:
    try:
        return webhook_deliver_due()
    except Exception:
        logger.exception("webhook delivery pass failed")
        return 0
    finally:
        # This thread's own connection: give it back (to the pool) between batches.
        connection.close()


def webhook_deliver_due_soon() -> int:
    """Start one `webhook_deliver_due` batch on this process's webhook thread, if deliveries are
    due and the previous batch has finished; return 1 if a batch was started, else 0.

    Returns at once (one indexed query): the maintenance pass calls it every tick, on the thread
    that also places tasks, which must never wait for a slow receiver.
    """
    global _background_batch
    with _background_lock:
        if _background_batch is not None and not _background_batch.done():
            return 0
        due = WebhookDelivery.objects.filter(
            status=WebhookStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        if not due.exists():
            return 0
        _background_batch = _background.submit(_deliver_in_background)
    return 1


# Operators -------------------------------------------------------------------------------------


def webhook_retry_now(*, deliveries: QuerySet[WebhookDelivery] | Iterable[int]) -> int:
    """Make failed (and waiting) deliveries due now; failed ones get `max_attempts` again.

    A delivery that is being sent right now is left alone. Returns how many were changed.
    """
    ids = (
        list(deliveries.values_list("pk", flat=True))
        if isinstance(deliveries, QuerySet)
        else list(deliveries)
    )
    now = timezone.now()
    with transaction.atomic():
        waiting = WebhookDelivery.objects.filter(
            pk__in=ids, status=WebhookStatus.PENDING, claim_token=""
        ).update(next_attempt_at=now)
        failed = WebhookDelivery.objects.filter(pk__in=ids, status=WebhookStatus.FAILED).update(
            status=WebhookStatus.PENDING, attempts=0, next_attempt_at=now, claim_token=""
        )
    return waiting + failed


def webhook_delivery_counts() -> dict[str, int]:
    """Deliveries by status (for /metrics)."""
    counts = dict(
        WebhookDelivery.objects.values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status.value: counts.get(status.value, 0) for status in WebhookStatus}
