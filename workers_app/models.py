"""Workers (one per agent) and the cluster join keys agents register with."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    BUSY = "busy"
    OFFLINE = "offline"
    ERROR = "error"


LIVE_WORKER_STATUSES = (WorkerStatus.ONLINE, WorkerStatus.BUSY)


class Worker(models.Model):
    """A machine running `worker_agent`, registered by name (registration is idempotent).

    `status` is ONLINE/BUSY while heartbeats arrive (BUSY when every slot is used), OFFLINE once
    silent for `heartbeat_timeout`, ERROR when the agent reports its aria2c unusable.
    Slots in use are counted from the task table (see `selectors.worker_slots_used`), never
    kept as a counter that could drift; `slots_used` holds what the agent last reported.
    """

    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=8, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE
    )
    capabilities = models.JSONField(default=dict, blank=True)
    max_tasks = models.PositiveIntegerField(default=5)
    slots_used = models.PositiveIntegerField(default=0)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    free_disk = models.BigIntegerField(default=0)
    download_speed = models.BigIntegerField(default=0)
    upload_speed = models.BigIntegerField(default=0)
    aria2_version = models.CharField(max_length=32, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    draining = models.BooleanField(default=False)
    token_prefix = models.CharField(max_length=16, blank=True, db_index=True)
    token_hash = models.CharField(max_length=64, blank=True)
    registered_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def supports_bt(self) -> bool:
        return bool(self.capabilities.get("supports_bt", True))

    @property
    def supports_metalink(self) -> bool:
        return bool(self.capabilities.get("supports_metalink", True))

    @property
    def tags(self) -> dict[str, str]:
        tags = self.capabilities.get("tags") or {}
        return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}

    def is_stale(self, *, timeout_seconds: float, now: datetime | None = None) -> bool:
        """True when no heartbeat arrived within `timeout_seconds`."""
        if self.last_heartbeat is None:
            return True
        now = now or timezone.now()
        return self.last_heartbeat < now - timedelta(seconds=timeout_seconds)


class JoinKey(models.Model):
    """A cluster join key: lets an agent register (and nothing else). Stored hashed."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
