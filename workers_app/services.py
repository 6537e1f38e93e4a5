"""Worker writes: registration, heartbeats, draining, removal, join keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ariacluster.auth import (
    JOIN_KEY_TAG,
    WORKER_TOKEN_TAG,
    config_secret_matches,
    digest_matches,
    issue_secret,
    split_secret,
)
from dispatcher import broadcast
from dispatcher.models import LEASED_STATUSES
from dispatcher.placement import refresh_after_commit
from workers_app.models import JoinKey, Worker, WorkerStatus

logger = logging.getLogger(__name__)


class WorkerStateError(Exception):
    """The worker's state does not allow this action."""


@dataclass(frozen=True)
class Registration:
    worker: Worker
    token: str


def join_key_create(*, name: str) -> tuple[JoinKey, str]:
    """Create a join key; the plaintext is returned once and never stored."""
    secret = issue_secret(JOIN_KEY_TAG)
    key = JoinKey.objects.create(name=name, prefix=secret.prefix, key_hash=secret.digest)
    return key, secret.plaintext


def join_key_is_valid(plaintext: str) -> bool:
    prefix = split_secret(plaintext, JOIN_KEY_TAG)
    if prefix is not None:
        key = JoinKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
        if key is not None and digest_matches(plaintext, key.key_hash):
            return True
    return config_secret_matches(plaintext, settings.ARIACLUSTER.security.join_keys)


def worker_for_token(plaintext: str) -> Worker | None:
    prefix = split_secret(plaintext, WORKER_TOKEN_TAG)
    if prefix is None:
        return None
    worker = Worker.objects.filter(token_prefix=prefix).first()
    if worker is None or not digest_matches(plaintext, worker.token_hash):
        return None
    return worker


def worker_register(
    *,
    name: str,
    hostname: str = "",
    pid: int | None = None,
    agent_version: str = "",
    aria2_version: str = "",
    max_tasks: int = 5,
    free_disk: int = 0,
    capabilities: dict[str, Any] | None = None,
) -> Registration:
    """Create or refresh the worker called `name` and issue it a new token.

    Idempotent by name: tasks leased to it stay leased (the agent gets them in its next sync).
    The previous token stops working.
    """
    now = timezone.now()
    secret = issue_secret(WORKER_TOKEN_TAG)
    with transaction.atomic():
        worker, _ = Worker.objects.select_for_update().get_or_create(name=name)
        was_online = worker.status == WorkerStatus.ONLINE
        worker.hostname = hostname
        worker.pid = pid
        worker.agent_version = agent_version
        worker.aria2_version = aria2_version
        worker.max_tasks = max_tasks
        worker.free_disk = free_disk
        worker.capabilities = capabilities or {}
        worker.token_prefix = secret.prefix
        worker.token_hash = secret.digest
        worker.last_heartbeat = now
        worker.status = WorkerStatus.ONLINE
        if not was_online:
            worker.status_changed_at = now
        worker.save()
        refresh_after_commit(worker_ids=[worker.pk])
    logger.info("worker %s registered (pid %s, %d slots)", name, pid, max_tasks)
    return Registration(worker=worker, token=secret.plaintext)


def worker_heartbeat(
    *, worker: Worker, slots_used: int, download_speed: int, upload_speed: int, free_disk: int
) -> Worker:
    """Renew the worker's lease on everything it holds and record its load."""
    now = timezone.now()
    with transaction.atomic():
        fields = {
            "last_heartbeat": now,
            "slots_used": max(0, slots_used),
            "download_speed": max(0, download_speed),
            "upload_speed": max(0, upload_speed),
            "free_disk": max(0, free_disk),
        }
        came_back = worker.status != WorkerStatus.ONLINE
        if came_back:
            fields.update(status=WorkerStatus.ONLINE, status_changed_at=now)
        Worker.objects.filter(pk=worker.pk).update(**fields)
        for key, value in fields.items():
            setattr(worker, key, value)
        if came_back:
            refresh_after_commit(worker_ids=[worker.pk])
        else:
            transaction.on_commit(lambda: broadcast.broadcast_worker_updated([worker.pk]))
    return worker


def worker_set_draining(*, worker: Worker, draining: bool) -> Worker:
    """A draining worker finishes what it holds and gets nothing new."""
    with transaction.atomic():
        Worker.objects.filter(pk=worker.pk).update(draining=draining)
        worker.draining = draining
        if draining:
            transaction.on_commit(lambda: broadcast.broadcast_worker_updated([worker.pk]))
        else:
            refresh_after_commit(worker_ids=[worker.pk])
    return worker


def worker_remove(*, worker: Worker) -> None:
    """Delete an offline worker that holds no task."""
    with transaction.atomic():
        locked = Worker.objects.select_for_update().get(pk=worker.pk)
        if locked.status != WorkerStatus.OFFLINE:
            raise WorkerStateError(
                f"worker {locked.name} is {locked.status}; only offline "
                "workers can be removed (drain it and stop its agent first)"
            )
        if locked.tasks.filter(status__in=LEASED_STATUSES).exists():
            raise WorkerStateError(f"worker {locked.name} still holds tasks")
        worker_id = locked.pk
        locked.delete()
        transaction.on_commit(lambda: broadcast.broadcast_worker_updated([worker_id]))
