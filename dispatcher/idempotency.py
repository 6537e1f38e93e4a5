"""`Idempotency-Key` for create requests: the same key and request create one task, once.

The record and the task are written in one transaction, and (scope, key) is unique. Concurrent
repeats either wait for the first writer's lock (SQLite takes the write lock at BEGIN) or lose
the unique-constraint race (PostgreSQL), roll back their own task and replay the stored answer.
A failed request (4xx) stores nothing, so the caller may fix it and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from ariacluster.auth import ApiCredential
from ariacluster.http import Conflict
from dispatcher.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
RETENTION = timedelta(hours=24)


def caller_scope(request: Request) -> str:
    """Who is asking: answers are only replayed to the same caller."""
    user = request.user
    if user is not None and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}"
    auth = request.auth
    if isinstance(auth, ApiCredential):
        return f"key:{auth.key_id}" if auth.key_id is not None else f"config:{auth.name}"
    return "anonymous"


def request_fingerprint(request: Request) -> str:
    """A digest of what was asked: path, the decoded body, and the bytes of any upload."""
    digest = hashlib.sha256(request.path.encode())
    data = request.data
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in request.FILES}
    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    for name in sorted(request.FILES):
        upload = request.FILES[name]
        digest.update(name.encode())
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise Conflict(f"{HEADER} was already used with a different request; use a new key.")
    return Response(record.body, status=record.status_code, headers={"Idempotent-Replayed": "true"})


def idempotent(request: Request, create: Callable[[], Response]) -> Response:
    """Run `create` at most once per (caller, Idempotency-Key); without the header, just run it."""
    key = request.headers.get(HEADER)
    if key is None:
        return create()
    if not KEY_RE.match(key):
        raise exceptions.ValidationError(
            {HEADER: ["must be 1-255 printable ASCII characters without spaces"]}
        )
    scope = caller_scope(request)
    fingerprint = request_fingerprint(request)
    for _ in range(3):
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
                if record is not None:
                    return _replay(record, fingerprint)
                response = create()
                if response.status_code < 300:
                    IdempotencyRecord.objects.create(
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        status_code=response.status_code,
                        body=_plain(response.data),
                    )
                return response
        except IntegrityError:
            # A concurrent request with this key committed first; ours was rolled back whole.
            continue
    raise Conflict(f"{HEADER} is being used by concurrent requests; retry shortly.")


def _plain(data: Any) -> Any:
    """Serializer output (ReturnDict, OrderedDict, lazy strings) as plain JSON values."""
    return json.loads(json.dumps(data, default=str))


def idempotency_purge_expired(*, now: Any = None) -> int:
    """Forget answers older than a day (run by the maintenance pass)."""
    now = now or timezone.now()
    expired = IdempotencyRecord.objects.filter(created_at__lt=now - RETENTION)
    # Look before deleting: on SQLite even an empty DELETE takes the write lock.
    if not expired.exists():
        return 0
    deleted, _ = expired.delete()
    return deleted
