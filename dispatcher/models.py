"""Tasks, their event history, user API keys, and the webhook outbox."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Priority(models.IntegerChoices):
    """The original system's 1–4 scale; higher is placed first."""

    LOW = 1, "low"
    NORMAL = 2, "normal"
    HIGH = 3, "high"
    URGENT = 4, "urgent"


class TaskKind(models.TextChoices):
    URI = "uri", "URL / mirrors"
    MAGNET = "magnet", "magnet"
    TORRENT = "torrent", "torrent"
    METALINK = "metalink", "metalink"


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


ACTIVE_STATUSES = (TaskStatus.QUEUED, TaskStatus.DOWNLOADING)
LEASED_STATUSES = (TaskStatus.QUEUED, TaskStatus.DOWNLOADING, TaskStatus.PAUSED)
FINAL_STATUSES = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)


class ErrorClass(models.TextChoices):
    NONE = "", "none"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    WORKER_LOCAL = "worker_local", "worker-local"


class Task(models.Model):
    """One download as the user sees it, however many aria2 GIDs it becomes.

    State machine (the dispatcher is the source of truth; every change goes through
    `dispatcher.services` or `dispatcher.leases`)::

        pending --assign--> queued --agent started--> downloading --> completed
        queued/downloading --pause--> paused --resume--> queued/downloading (or pending)
        queued/downloading --error, attempts left--> pending (not before now + retry_delay)
        queued/downloading --permanent error or retries exhausted--> failed
        queued/downloading --worker silent > heartbeat_timeout--> pending (epoch + 1)
        any non-final --cancel--> canceled;  failed/canceled --retry--> pending

    `epoch` is bumped at each assignment and each lease loss: an agent report naming an older
    epoch is refused (HTTP 409).
    """

    name = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, choices=TaskKind.choices, default=TaskKind.URI)
    uris = models.JSONField(default=list)
    options = models.JSONField(default=dict, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    pending_reason = models.CharField(max_length=255, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
    )
    # The API key the task was created with: its webhook URL hears when the task finishes.
    api_key = models.ForeignKey(
        "ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )

    worker = models.ForeignKey(
        "workers_app.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    epoch = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    not_before = models.DateTimeField(null=True, blank=True)
    gid = models.CharField(max_length=16, blank=True)
    # Workers that failed this task with a worker-local error (disk full, file system).
    avoid_workers = models.JSONField(default=list, blank=True)

    total_length = models.BigIntegerField(default=0)
    completed_length = models.BigIntegerField(default=0)
    download_speed = models.BigIntegerField(default=0)
    upload_speed = models.BigIntegerField(default=0)
    connections = models.PositiveIntegerField(default=0)

    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    error_class = models.CharField(max_length=16, choices=ErrorClass.choices, blank=True)
    result = models.JSONField(default=list, blank=True)
    # Per-file state as the agent last reported it (index, path, size, completed, selected);
    # filled from the upload at submit for torrents and Metalinks.
    files = models.JSONField(default=list, blank=True)
    # What the download is doing beyond its status: "fetching metadata", "awaiting selection",
    # "seeding" (status stays `completed` while seeding).
    phase = models.CharField(max_length=32, blank=True)
    seeding = models.BooleanField(default=False)
    uploaded_length = models.BigIntegerField(default=0)
    # Stop after the file list is known until the user chooses files (POST .../files/).
    pause_for_selection = models.BooleanField(default=False)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "-priority", "created_at"], name="task_queue_idx"),
            models.Index(fields=["worker", "status"], name="task_worker_idx"),
            models.Index(fields=["-created_at"], name="task_recent_idx"),
            # The task list filtered by status, newest first, without sorting every match.
            models.Index(fields=["status", "-created_at", "-id"], name="task_status_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name or (self.uris[0] if self.uris else '')}"

    @property
    def progress_percent(self) -> float:
        if self.status == TaskStatus.COMPLETED:
            return 100.0
        if self.total_length <= 0:
            return 0.0
        return round(min(100.0, 100.0 * self.completed_length / self.total_length), 2)

    @property
    def eta_seconds(self) -> int | None:
        if self.download_speed <= 0 or self.total_length <= 0:
            return None
        return max(0, (self.total_length - self.completed_length) // self.download_speed)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class TaskUpload(models.Model):
    """The `.torrent` or Metalink document a task was submitted with, kept apart from `Task` so
    task lists never load the bytes. Sent to the worker (base64) in the assignment."""

    task = models.OneToOneField(
        Task, on_delete=models.CASCADE, primary_key=True, related_name="upload"
    )
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    content = models.BinaryField()
    size = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.kind} upload of task {self.task_id} ({self.size} bytes)"


class TaskEventKind(models.TextChoices):
    CREATED = "created"
    ASSIGNED = "assigned"
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    RETRIED = "retried"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELED = "canceled"
    LEASE_EXPIRED = "lease_expired"
    RELEASED = "released"
    PRIORITY = "priority"
    OPTIONS = "options"
    FILES = "files"


class TaskEvent(models.Model):
    """An append-only history line of one task (who held it, at which epoch, what happened)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=TaskEventKind.choices)
    worker = models.ForeignKey(
        "workers_app.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker_name = models.CharField(max_length=255, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["task", "created_at"], name="event_task_idx")]

    def __str__(self) -> str:
        return f"{self.kind} task={self.task_id} epoch={self.epoch}"


class ApiScope(models.TextChoices):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


SCOPE_RANK = {ApiScope.READ: 1, ApiScope.WRITE: 2, ApiScope.ADMIN: 3}


class ApiKey(models.Model):
    """A user API key, stored as a lookup prefix plus the SHA-256 of the whole key.

    The key itself is shown once at creation and never stored. Keys are 256-bit random values,
    so a fast hash is enough: there is nothing to brute-force.

    `webhook_url` (optional) is told when tasks created with this key complete or fail; the
    deliveries are signed with `webhook_secret`, which is kept as is because signing needs it
    (docs/security.md) and shown only once.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=ApiScope.choices, default=ApiScope.WRITE)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    webhook_url = models.CharField(max_length=2048, blank=True)
    webhook_secret = models.CharField(max_length=128, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


class SpeedSample(models.Model):
    """The cluster's total speed at one moment, for the dashboard's throughput chart.

    One row per `bucket` (Unix time // sample interval, unique), so when several dispatcher
    processes run the maintenance pass the first insert of a bucket wins and the others are
    ignored. Rows older than the chart's window are pruned by the same pass.
    """

    bucket = models.BigIntegerField(unique=True)
    at = models.DateTimeField()
    download_speed = models.BigIntegerField(default=0)
    upload_speed = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["bucket"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.download_speed} B/s"


class IdempotencyRecord(models.Model):
    """The stored answer to a create request sent with an `Idempotency-Key` header.

    Unique per (scope, key): the scope is the caller (user, API key, or anonymous), so two
    callers never see each other's answers. A repeat with the same key and the same request gets
    this answer again; with a different request it is refused. Kept for a day.
    """

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class WebhookStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One notification of one task event to one URL: the transactional outbox.

    Written in the same transaction that made the task completed or failed, so an event is
    never lost, then sent by `dispatcher.webhooks.webhook_deliver_due` outside any transaction::

        pending --2xx--> delivered
        pending --error, attempts left--> pending (next_attempt_at = now + backoff)
        pending --error, max_attempts reached, or refused by the URL policy--> failed
        failed --"retry now" (admin)--> pending (attempts start again)

    A sender claims a row by moving `next_attempt_at` past the longest its batch can take and
    setting `claim_token`; only the holder of that token records the outcome. A sender that dies
    mid-send loses its claim when `next_attempt_at` passes, and the row is sent again (the
    receiver dedupes by `uuid`, sent as `X-Ariacluster-Delivery`).
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=32)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="webhook_deliveries")
    # Signed with this key's webhook secret; None with `per_key` false: the global secret.
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    per_key = models.BooleanField(default=False)
    url = models.CharField(max_length=2048)
    # The task as it was at the event, so a later retry of the task does not change the news.
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claim_token = models.CharField(max_length=32, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} of task {self.task_id} ({self.status})"
