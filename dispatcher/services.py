"""Task writes users make: create, cancel, pause, resume, retry, priority, requeue.

Every function runs in one transaction, broadcasts after commit, and is the single path the REST
API, the admin, the dashboard and the management commands use. Refusals raise `TaskStateError`
(HTTP 409) or Django's `ValidationError` (HTTP 400) and change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dispatcher import broadcast
from dispatcher.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    LEASED_STATUSES,
    ErrorClass,
    Priority,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskStatus,
    TaskUpload,
)
from dispatcher.placement import refresh_after_commit
from dispatcher.validation import (
    TASK_FIELDS,
    TaskInput,
    parse_priority,
    validate_options,
    validate_task_input,
)

logger = logging.getLogger(__name__)


class TaskStateError(Exception):
    """The task's status does not allow this action."""


class QueueFull(Exception):
    """The owner already has `security.max_queued_per_user` tasks waiting (HTTP 429)."""

    http_status = 429


def _check_queue_cap(owner: Any, adding: int) -> None:
    """Refuse tasks that would take the owner's pending + queued tasks over the cap.

    Ownerless callers (keys without a user) share one allowance. Staff, admin-scope keys and
    internal callers (no `owner`: commands, imports) are not capped. A soft cap: two concurrent
    creations may each pass the check.
    """
    if owner is None or getattr(owner, "is_staff", False):
        return
    cap = settings.ARIACLUSTER.security.max_queued_per_user
    waiting = Task.objects.filter(
        owner_id=getattr(owner, "pk", None), status__in=[TaskStatus.PENDING, TaskStatus.QUEUED]
    ).count()
    if waiting + adding > cap:
        raise QueueFull(
            f"too many queued tasks: {waiting} waiting, {adding} more would pass the limit of "
            f"{cap} per user (security.max_queued_per_user); wait for some to start"
        )


class InvalidBatch(Exception):
    """Some items of a batch are invalid; `errors` maps item index to field messages."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(f"{len(errors)} invalid item(s)")
        self.errors = errors


def _tell_agent_after_commit(task: Task, message_type: str, worker_id: int | None) -> None:
    if worker_id is None:
        return
    payload = {"type": message_type, "task_id": task.pk, "epoch": task.epoch}
    transaction.on_commit(lambda: broadcast.send_to_agent(worker_id, payload))


def _build(data: TaskInput, owner: Any, api_key_id: int | None) -> Task:
    return Task(
        kind=data.kind,
        uris=data.uris,
        options=data.options,
        priority=data.priority,
        tags=data.tags,
        name=data.name,
        files=data.files,
        total_length=data.total_length,
        pause_for_selection=data.pause_for_selection,
        owner=owner if getattr(owner, "pk", None) else None,
        api_key_id=api_key_id,
    )


def _upload_of(task: Task, data: TaskInput) -> TaskUpload | None:
    if data.upload is None:
        return None
    return TaskUpload(task=task, kind=data.kind, content=data.upload, size=len(data.upload))


def _created_message(data: TaskInput) -> str:
    if data.upload is not None:
        return f"{data.kind} upload, {len(data.files)} file(s), {len(data.uris)} web seed(s)"
    return f"{len(data.uris)} URI(s)"


def task_create(*, owner: Any = None, api_key_id: int | None = None, **fields: Any) -> Task:
    """Validate and queue one download; placement runs right after commit.

    `api_key_id`: the key the request came with (its webhook URL hears when the task ends).
    """
    data = validate_task_input(**fields)
    _check_queue_cap(owner, 1)
    with transaction.atomic():
        task = _build(data, owner, api_key_id)
        task.save()
        upload = _upload_of(task, data)
        if upload is not None:
            upload.save()
        TaskEvent.objects.create(
            task=task, kind=TaskEventKind.CREATED, message=_created_message(data)
        )
        logger.info(
            "task %s created: %s, %s",
            task.pk,
            data.kind,
            _created_message(data),
            extra={"task_id": task.pk},
        )
        refresh_after_commit(task_ids=[task.pk])
    return task


def task_create_batch(
    *, items: Sequence[dict[str, Any]], owner: Any = None, api_key_id: int | None = None
) -> list[Task]:
    """Validate every item first; if any is invalid nothing is created.

    Raises `InvalidBatch` whose `errors` are keyed by item index (``"3": {...}``).
    """
    cleaned: list[TaskInput] = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(index)] = ['must be an object like {"url": ...}']
            continue
        unknown = set(item) - TASK_FIELDS
        if unknown:
            errors[str(index)] = [f"unknown field(s): {', '.join(sorted(unknown))}"]
            continue
        try:
            cleaned.append(validate_task_input(**item))
        except ValidationError as exc:
            errors[str(index)] = exc.message_dict
    if errors:
        raise InvalidBatch(errors)
    _check_queue_cap(owner, len(cleaned))
    now = timezone.now()
    with transaction.atomic():
        tasks = [_build(data, owner, api_key_id) for data in cleaned]
        for task in tasks:
            task.created_at = now
        # Both supported databases return the new ids from a bulk insert.
        tasks = Task.objects.bulk_create(tasks)
        uploads = [_upload_of(t, data) for t, data in zip(tasks, cleaned, strict=True)]
        TaskUpload.objects.bulk_create([u for u in uploads if u is not None])
        TaskEvent.objects.bulk_create(
            TaskEvent(
                task=t, kind=TaskEventKind.CREATED, created_at=now, message=_created_message(d)
            )
            for t, d in zip(tasks, cleaned, strict=True)
        )
        if tasks:
            logger.info(
                "tasks %s to %s created (a batch of %d)", tasks[0].pk, tasks[-1].pk, len(tasks)
            )
        refresh_after_commit(task_ids=[t.pk for t in tasks])
    return tasks


def _locked(task_id: int) -> Task:
    return Task.objects.select_for_update().get(pk=task_id)


def _transition(
    task: Task, allowed: Sequence[str], action: str, change: Callable[[Task], str]
) -> Task:
    """Lock the task, check its status allows `action`, apply `change`, record the event."""
    with transaction.atomic():
        locked = _locked(task.pk)
        if locked.status not in allowed:
            raise TaskStateError(f"cannot {action} a task that is {locked.status}")
        kind = change(locked)
        locked.save()
        TaskEvent.objects.create(
            task=locked,
            kind=kind,
            worker=locked.worker,
            worker_name=locked.worker.name if locked.worker else "",
            epoch=locked.epoch,
            message=f"{action} requested",
        )
        logger.info(
            "task %s: %s requested; now %s",
            locked.pk,
            action,
            locked.status,
            extra={"task_id": locked.pk, "worker": locked.worker.name if locked.worker else None},
        )
    return locked


def task_cancel(*, task: Task) -> Task:
    """Stop the download wherever it runs; the agent removes its files."""

    def change(t: Task) -> str:
        _tell_agent_after_commit(t, "cancel", t.worker_id)
        t.status = TaskStatus.CANCELED
        t.finished_at = timezone.now()
        t.download_speed = 0
        t.connections = 0
        refresh_after_commit(task_ids=[t.pk])
        return TaskEventKind.CANCELED

    allowed = [s for s in TaskStatus if s not in FINAL_STATUSES]
    return _transition(task, allowed, "cancel", change)


def task_pause(*, task: Task) -> Task:
    def change(t: Task) -> str:
        _tell_agent_after_commit(t, "pause", t.worker_id)
        t.status = TaskStatus.PAUSED
        t.download_speed = 0
        refresh_after_commit(task_ids=[t.pk])
        return TaskEventKind.PAUSED

    return _transition(task, [TaskStatus.PENDING, *ACTIVE_STATUSES], "pause", change)


def task_resume(*, task: Task) -> Task:
    def change(t: Task) -> str:
        if t.worker_id is None:
            t.status = TaskStatus.PENDING
            refresh_after_commit(task_ids=[t.pk])
        else:
            t.status = TaskStatus.DOWNLOADING if t.started_at else TaskStatus.QUEUED
            _tell_agent_after_commit(t, "resume", t.worker_id)
            transaction.on_commit(lambda: broadcast.broadcast_task_updated([t.pk]))
        return TaskEventKind.RESUMED

    return _transition(task, [TaskStatus.PAUSED], "resume", change)


def task_retry(*, task: Task) -> Task:
    """Start a failed or canceled task again from scratch (or a delayed retry now)."""

    def change(t: Task) -> str:
        if t.status == TaskStatus.PENDING:
            t.not_before = None
        else:
            t.status = TaskStatus.PENDING
            t.worker = None
            t.attempts = 0
            t.avoid_workers = []
            t.not_before = None
            t.error_code = None
            t.error_message = ""
            t.error_class = ErrorClass.NONE
            t.result = []
            t.completed_length = 0
            t.finished_at = None
            t.phase = ""
            t.files = [{**f, "completed": 0} for f in t.files or []]
        refresh_after_commit(task_ids=[t.pk])
        return TaskEventKind.RETRIED

    return _transition(
        task, [TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.PENDING], "retry", change
    )


def task_requeue(*, task: Task) -> Task:
    """Take a running task off its worker (new epoch) and queue it for placement again."""

    def change(t: Task) -> str:
        _tell_agent_after_commit(t, "cancel", t.worker_id)
        t.status = TaskStatus.PENDING
        t.worker = None
        t.epoch += 1
        t.download_speed = 0
        t.connections = 0
        refresh_after_commit(task_ids=[t.pk])
        return TaskEventKind.RELEASED

    return _transition(task, list(ACTIVE_STATUSES), "requeue", change)


def task_set_priority(*, task: Task, priority: Any) -> Task:
    value = parse_priority(priority)

    def change(t: Task) -> str:
        t.priority = value
        refresh_after_commit(task_ids=[t.pk])
        return TaskEventKind.PRIORITY

    return _transition(task, list(TaskStatus), f"set priority {Priority(value).label} of", change)


def _push_options_after_commit(task: Task) -> None:
    """Tell the holding agent the task's new options (live change or restart, its choice)."""
    if task.worker_id is None or task.status not in LEASED_STATUSES:
        return
    payload = {
        "type": "options",
        "task_id": task.pk,
        "epoch": task.epoch,
        "options": dict(task.options),
        "pause_for_selection": task.pause_for_selection,
    }
    worker_id = task.worker_id
    transaction.on_commit(lambda: broadcast.send_to_agent(worker_id, payload))
    transaction.on_commit(lambda: broadcast.broadcast_task_updated([task.pk]))


def task_change_options(*, task: Task, options: Any) -> Task:
    """Merge `options` into an unfinished task's options (a null value removes one).

    Speed limits apply live on the worker; any other change makes aria2 restart that download
    on the same worker, keeping its data. Raises `ValidationError` (400) for a bad option.
    """
    if not isinstance(options, dict) or not options:
        raise ValidationError({"options": ["must be a non-empty object of aria2 options"]})
    changes = {k: v for k, v in options.items() if v is not None}
    removed = sorted(k for k, v in options.items() if v is None)
    validate_options(changes)

    def change(t: Task) -> str:
        merged = {k: v for k, v in (t.options or {}).items() if k not in removed}
        merged.update(changes)
        t.options = validate_options(merged)
        _push_options_after_commit(t)
        return TaskEventKind.OPTIONS

    names = ", ".join(sorted([*changes, *removed]))
    return _transition(
        task, [s for s in TaskStatus if s not in FINAL_STATUSES], f"set {names} of", change
    )


def task_select_files(*, task: Task, select: Any) -> Task:
    """Choose which files of a torrent / Metalink to download (1-based, aria2's `select-file`).

    Also ends a `pause_for_selection` hold, so the download starts. Raises `ValidationError`.
    """
    if (
        not isinstance(select, list)
        or not select
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in select)
    ):
        raise ValidationError({"select": ["must be a non-empty list of file indexes (1-based)"]})
    if task.kind not in (TaskKind.TORRENT, TaskKind.MAGNET, TaskKind.METALINK):
        raise ValidationError({"select": ["only torrents, magnets and Metalinks have files"]})
    known = {int(f.get("index", 0)) for f in task.files or []}
    unknown = sorted(set(select) - known) if known else []
    if unknown:
        raise ValidationError({"select": [f"no file with index {unknown[0]}; see 'files'"]})
    value = ",".join(str(i) for i in sorted(set(select)))

    def change(t: Task) -> str:
        t.options = validate_options({**(t.options or {}), "select-file": value})
        t.pause_for_selection = False
        if t.phase == "awaiting selection":
            t.phase = ""
        chosen = set(select)
        t.files = [{**f, "selected": int(f.get("index", 0)) in chosen} for f in t.files or []]
        _push_options_after_commit(t)
        return TaskEventKind.FILES

    return _transition(
        task, [s for s in TaskStatus if s not in FINAL_STATUSES], f"select files {value} of", change
    )


def task_purge(
    *,
    statuses: Sequence[str],
    older_than: datetime,
    batch_size: int = 500,
    on_progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
) -> int:
    """Delete finished tasks (with their events and uploads) that finished before `older_than`.

    Only final statuses (completed, failed, canceled) may be purged; anything else raises
    `ValidationError` and deletes nothing. Rows go in batches of `batch_size`, each batch in its
    own transaction, so a large purge never holds one long lock; `on_progress(deleted_so_far)`
    runs after each batch. Returns the number of tasks deleted (with `dry_run`, that would be).
    """
    wanted = list(dict.fromkeys(statuses))
    not_final = [s for s in wanted if s not in FINAL_STATUSES]
    if not wanted or not_final:
        allowed = ", ".join(FINAL_STATUSES)
        raise ValidationError({"status": [f"only {allowed} tasks can be purged"]})
    # A final task always has finished_at, except rows from before it was recorded.
    old = Q(finished_at__lt=older_than) | Q(finished_at__isnull=True, updated_at__lt=older_than)
    candidates = Task.objects.filter(old, status__in=wanted).order_by("pk")
    if dry_run:
        return candidates.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(candidates.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            # Re-check the status inside the transaction: a retry may have revived a task.
            _, per_model = Task.objects.filter(pk__in=ids, status__in=wanted).delete()
        deleted += per_model.get(Task._meta.label, 0)
        broadcast.broadcast_task_updated(ids)
        if on_progress is not None:
            on_progress(deleted)
    return deleted
