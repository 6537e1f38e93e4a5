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
before each send, after DNS; the connection then goes to the very address that was checked,
and redirects are not followed, so a receiver cannot bounce the dispatcher elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from ariacluster.config import check_webhook_url, webhook_policy
from dispatcher.models import (
    ApiKey,
    Priority,
    Task,
    TaskStatus,
    WebhookDelivery,
    WebhookStatus,
)
from dispatcher.redaction import redact_uri
from worker_agent.urlpolicy import UrlDenied, UrlPolicy, host_address

logger = logging.getLogger(__name__)

EVENT_BY_STATUS: dict[str, str] = {
    TaskStatus.COMPLETED: "task.completed",
    TaskStatus.FAILED: "task.failed",
}
# One call of webhook_deliver_due sends at most this many, this many at a time.
BATCH_SIZE = 20
SEND_THREADS = 8
# A claim outlives the longest send (connect + response, each up to `timeout`) by this much.
CLAIM_MARGIN = timedelta(seconds=30)
USER_AGENT = "ariacluster-webhooks/1"
SECRET_TAG = "whsec"
# What of a receiver's answer is kept in `last_error` (enough to read an error message).
ERROR_SNIPPET = 300


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


def webhook_display_url(url: str) -> str:
    """`url` without user info and with secret-looking query values masked, for people."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    netloc = parts.netloc.rpartition("@")[2]
    return redact_uri(parts._replace(netloc=netloc).geturl())


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
    created with (unless that key is revoked), for the events in `webhooks.events`. Returns
    how many deliveries were queued.
    """
    event = EVENT_BY_STATUS.get(task.status)
    config = settings.ARIACLUSTER.webhooks
    if event is None:
        raise ValueError(f"task {task.pk} is {task.status}: no webhook event for that")
    if event not in config.events:
        return 0
    targets: list[tuple[str, ApiKey | None]] = [(url, None) for url in config.urls]
    if task.api_key_id is not None:
        key = ApiKey.objects.filter(pk=task.api_key_id, revoked_at__isnull=True).first()
        if key is not None and key.webhook_url:
            targets.append((key.webhook_url, key))
    if not targets:
        return 0
    now = now or timezone.now()
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


@dataclass(frozen=True)
class _Job:
    """One signed request, ready to send without touching the database."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status_code: int | None = None
    error: str = ""
    # Retrying cannot help (the URL policy refuses it, no secret to sign with).
    permanent: bool = False


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connect to addresses already checked by the URL policy, not to a fresh DNS answer."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def _open(self) -> socket.socket:
        last: OSError = OSError(f"no address for {self.host}")
        for address in self._addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as exc:
                last = exc
        raise last

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, addresses, timeout)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        # The certificate is checked against the URL's host name, as a browser would.
        self.sock = self._tls.wrap_socket(self._open(), server_hostname=self.host)


def _checked_addresses(policy: UrlPolicy, url: str, host: str, port: int) -> list[str]:
    """Resolve `host` and return its addresses if the policy allows every one (UrlDenied else)."""
    web_only = webhook_policy(policy)
    web_only.check_uri(url)
    literal = host_address(host)
    if literal is not None:
        return [str(literal)]
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
    addresses: list[str] = []
    for answer in answers:
        address = ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0])
        refusal = web_only.address_refusal(address, port)
        if refusal:
            raise UrlDenied(url, f"{host} resolves to {refusal}")
        addresses.append(str(address))
    return list(dict.fromkeys(addresses))


def _send(job: _Job, policy: UrlPolicy, timeout: float) -> _Outcome:
    """POST one delivery; no database access here (it runs in a thread, outside transactions)."""
    parts = urlsplit(job.url)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    try:
        addresses = _checked_addresses(policy, job.url, host, port)
    except UrlDenied as exc:
        return _Outcome(False, error=f"refused by the URL policy: {exc.reason}", permanent=True)
    except OSError as exc:
        return _Outcome(False, error=str(exc))
    headers = dict(job.headers)
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    kind = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    conn = kind(host, port, addresses, timeout)
    try:
        conn.request("POST", target, body=job.body, headers=headers)
        response = conn.getresponse()
        snippet = response.read(ERROR_SNIPPET).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return _Outcome(False, error=f"{type(exc).__name__}: {exc}"[:ERROR_SNIPPET])
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return _Outcome(True, status_code=response.status)
    if 300 <= response.status < 400:
        where = webhook_display_url(response.getheader("Location") or "?")
        return _Outcome(
            False, response.status, f"HTTP {response.status}: redirects are not followed ({where})"
        )
    text = " ".join(snippet.split())
    return _Outcome(False, response.status, f"HTTP {response.status}: {text}"[:ERROR_SNIPPET])


def retry_wait(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): doubling from `webhooks.backoff`,
    at most `webhooks.backoff_max`, times a random 0.5-1.0 so failed bursts spread out."""
    config = settings.ARIACLUSTER.webhooks
    ceiling = min(config.backoff_max, config.backoff * 2.0 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _claim_due(now: datetime, limit: int) -> tuple[str, list[WebhookDelivery]]:
    """Take up to `limit` due rows for this caller; no other sender gets them until the claim
    ends. PostgreSQL skips rows another sender has locked; SQLite's IMMEDIATE transactions
    run claims one after another; the UPDATE re-checks the row is still due either way."""
    token = uuid.uuid4().hex
    timeout = settings.ARIACLUSTER.webhooks.timeout
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(
            status=WebhookStatus.PENDING, next_attempt_at__lte=now
        ).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return token, []
        WebhookDelivery.objects.filter(
            pk__in=ids, status=WebhookStatus.PENDING, next_attempt_at__lte=now
        ).update(
            claim_token=token,
            next_attempt_at=now + timedelta(seconds=2 * timeout) + CLAIM_MARGIN,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
        )
    claimed = WebhookDelivery.objects.filter(pk__in=ids, claim_token=token).select_related(
        "api_key"
    )
    return token, list(claimed.order_by("id"))


def _job(delivery: WebhookDelivery, now: datetime) -> _Job | _Outcome:
    """The signed request for one claimed row, or the outcome if it cannot be signed."""
    if delivery.per_key:
        key = delivery.api_key
        secret = key.webhook_secret if key is not None else ""
        if not secret:
            return _Outcome(False, error="the API key (and its secret) was deleted", permanent=True)
    else:
        secret = settings.ARIACLUSTER.webhooks.secret
        if not secret:
            return _Outcome(False, error="no webhook secret configured any more", permanent=True)
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
    return _Job(delivery.url, body, headers)


def _record(delivery: WebhookDelivery, token: str, outcome: _Outcome) -> str:
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
    """Send up to `limit` due deliveries (in parallel, each bounded by `webhooks.timeout`) and
    record their outcomes; return how many were attempted.

    Safe to call from several processes at once: each row is claimed by one caller. Never call
    it inside a transaction (the sends would hold it open).
    """
    now = now or timezone.now()
    token, claimed = _claim_due(now, limit)
    if not claimed:
        return 0
    config = settings.ARIACLUSTER.webhooks
    policy = settings.ARIACLUSTER.security.url_policy
    jobs: list[tuple[WebhookDelivery, _Job]] = []
    outcomes: list[tuple[WebhookDelivery, _Outcome]] = []
    for delivery in claimed:
        job = _job(delivery, now)
        if isinstance(job, _Outcome):
            outcomes.append((delivery, job))
        else:
            jobs.append((delivery, job))
    if jobs:
        with ThreadPoolExecutor(max_workers=min(SEND_THREADS, len(jobs))) as pool:
            sent = pool.map(lambda j: _send(j, policy, config.timeout), [j for _, j in jobs])
            outcomes += zip([d for d, _ in jobs], sent, strict=True)
    for delivery, outcome in outcomes:
        _record(delivery, token, outcome)
    return len(claimed)


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
