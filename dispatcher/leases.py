"""Leases: what agents report about tasks leased to them, and what happens when they go silent.

Every report names (task id, epoch). It is accepted only while the task is leased to the
reporting worker at that epoch; otherwise `StaleLease` (HTTP 409) tells the agent to drop its copy.
Completion is accepted exactly once; repeating it for the same lease answers success again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Field, Q
from django.utils import timezone

from dispatcher import broadcast
from dispatcher.errors import classify_error, describe_error
from dispatcher.models import (
    ACTIVE_STATUSES,
    LEASED_STATUSES,
    ErrorClass,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskStatus,
)
from dispatcher.placement import refresh_after_commit
from dispatcher.webhooks import webhook_enqueue_task_event
from worker_agent.logcontext import with_task_log_context
from workers_app.models import LIVE_WORKER_STATUSES, Worker, WorkerStatus

logger = logging.getLogger(__name__)

PROCESS_STARTED = time.monotonic()


class StaleLease(Exception):
    """The task is not leased to this worker at this epoch (any more)."""


class UnknownTask(Exception):
    """No task has this id."""


@dataclass(frozen=True)
class ProgressItem:
    task_id: int
    epoch: int
    status: str
    total_length: int
    completed_length: int
    download_speed: int
    upload_speed: int
    connections: int
    gid: str
    phase: str = ""
    seeding: bool = False
    uploaded_length: int = 0
    # None: unchanged since the agent's last report (it sends the list only when it changes).
    files: list[dict[str, Any]] | None = None


def _leased_task(worker: Worker, task_id: int, epoch: int) -> Task:
    """Lock and return the task if it is leased to `worker` at `epoch`."""
    task = Task.objects.select_for_update().filter(pk=task_id).first()
    if task is None:
        raise UnknownTask(f"task {task_id} does not exist")
    if task.worker_id != worker.pk or task.epoch != epoch or task.status not in LEASED_STATUSES:
        raise StaleLease(
            f"task {task_id} is not leased to worker {worker.name} at epoch {epoch} "
            f"(current epoch {task.epoch}, status {task.status})"
        )
    return task


def _event(
    task: Task, kind: str, worker: Worker | None, message: str = "", now: datetime | None = None
) -> None:
    TaskEvent.objects.create(
        task=task,
        kind=kind,
        worker=worker,
        worker_name=worker.name if worker else "",
        epoch=task.epoch,
        message=message,
        created_at=now or timezone.now(),
    )


@with_task_log_context
def task_report_started(*, worker: Worker, task_id: int, epoch: int, gid: str) -> Task:
    """aria2 accepted the download. Idempotent."""
    now = timezone.now()
    with transaction.atomic():
        task = _leased_task(worker, task_id, epoch)
        changed = task.gid != gid
        task.gid = gid
        if task.status == TaskStatus.QUEUED:
            task.status = TaskStatus.DOWNLOADING
            changed = True
        if task.started_at is None:
            task.started_at = now
        if changed:
            task.save(update_fields=["gid", "status", "started_at", "updated_at"])
            _event(task, TaskEventKind.STARTED, worker, f"gid {gid}", now)
            logger.info(
                "task %s started on %s (epoch %s, gid %s)", task_id, worker.name, epoch, gid
            )
            refresh_after_commit(task_ids=[task.pk], place=False)
    return task


# Written by a progress batch in one statement (`_write_progress`); `files` separately.
PROGRESS_FIELDS = [
    "total_length",
    "completed_length",
    "download_speed",
    "upload_speed",
    "connections",
    "gid",
    "status",
    "started_at",
    "updated_at",
    "phase",
    "seeding",
    "uploaded_length",
]


def _write_progress(tasks: Sequence[Task]) -> None:
    """One ``UPDATE … FROM (VALUES …)`` for a whole progress batch (rows already locked).

    Both databases take this form (SQLite since 3.33). It replaced one ORM ``UPDATE`` per task,
    whose query building and round trips were most of a progress post's cost (B4 in
    docs/benchmarks.md); Django's ``bulk_update`` (a ``CASE WHEN`` per field and row) was
    slower still. Values are bound parameters, prepared by each field for the database.
    """
    fields = [cast(Field, Task._meta.get_field(name)) for name in PROGRESS_FIELDS]  # type: ignore[type-arg]
    columns = [str(field.column) for field in fields]
    postgres = connection.vendor == "postgresql"
    casts = [f"::{field.db_type(connection)}" if postgres else "" for field in fields]
    row = "(%s::bigint, " if postgres else "(%s, "
    row += ", ".join(f"%s{suffix}" for suffix in casts) + ")"
    params: list[Any] = []
    for task in tasks:
        params.append(task.pk)
        for field in fields:
            value = getattr(task, field.attname)
            params.append(field.get_db_prep_save(value, connection))
    quote = connection.ops.quote_name
    table = quote(Task._meta.db_table)
    assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
    names = ", ".join(quote(c) for c in ["id", *columns])
    # Only quoted column names from the model and %s placeholders go into the text.
    sql = (
        f"WITH v ({names}) AS (VALUES {', '.join([row] * len(tasks))}) "  # noqa: S608
        f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{quote('id')} = v.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def merge_file_states(
    known: list[dict[str, Any]], reported: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The task's file list updated by an agent's report, matched by path.

    Known files (from the upload, or the first report) keep their index and order: an uploaded
    Metalink's files are separate aria2 downloads whose own numbering says nothing, and files
    left out by a selection may not be reported at all. New paths are appended.
    """
    by_path = {str(f.get("path")): f for f in reported}
    if not known or not by_path.keys() & {str(f.get("path")) for f in known}:
        # Nothing in common (e.g. a name aria2 learnt only later): the report replaces it.
        return reported
    merged = []
    for file in known:
        update = by_path.pop(str(file.get("path")), None)
        if update is None:
            merged.append(file)
        else:
            merged.append({**update, "index": file.get("index", update.get("index"))})
    return merged + list(by_path.values())


def _seeding_progress(task: Task, worker: Worker, item: ProgressItem, now: datetime) -> bool:
    """A completed task still seeding on its worker: record upload figures only."""
    if task.status != TaskStatus.COMPLETED or task.worker_id != worker.pk:
        return False
    if task.epoch != item.epoch:
        return False
    task.seeding = item.seeding
    task.phase = "seeding" if item.seeding else ""
    task.upload_speed = max(0, item.upload_speed) if item.seeding else 0
    task.uploaded_length = max(task.uploaded_length, item.uploaded_length)
    task.updated_at = now
    return True


def task_report_progress(*, worker: Worker, items: list[ProgressItem]) -> list[int]:
    """Store a batch of progress in one transaction; return the ids the worker must drop."""
    now = timezone.now()
    stale: list[int] = []
    with transaction.atomic():
        wanted = {item.task_id: item for item in items}
        tasks = {
            t.pk: t for t in Task.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
        }
        changed: list[Task] = []
        new_files: list[Task] = []
        for task_id, item in wanted.items():
            task = tasks.get(task_id)
            if task is not None and _seeding_progress(task, worker, item, now):
                changed.append(task)
                continue
            if (
                task is None
                or task.worker_id != worker.pk
                or task.epoch != item.epoch
                or task.status not in LEASED_STATUSES
            ):
                stale.append(task_id)
                logger.info(
                    "progress for task %s refused: lease gone", task_id, extra={"task_id": task_id}
                )
                continue
            task.total_length = max(0, item.total_length)
            task.completed_length = max(0, item.completed_length)
            task.download_speed = max(0, item.download_speed)
            task.upload_speed = max(0, item.upload_speed)
            task.connections = max(0, item.connections)
            if item.gid:
                task.gid = item.gid
            task.phase = item.phase[:32]
            task.seeding = False
            task.uploaded_length = max(task.uploaded_length, item.uploaded_length)
            if item.files is not None:
                task.files = merge_file_states(task.files or [], item.files)
                new_files.append(task)
            if task.status == TaskStatus.QUEUED and item.status == "active":
                task.status = TaskStatus.DOWNLOADING
                task.started_at = task.started_at or now
            task.updated_at = now
            changed.append(task)
        if changed:
            _write_progress(changed)
            # File lists come only when they changed (at most every few seconds per task).
            for task in new_files:
                Task.objects.filter(pk=task.pk).update(files=task.files)
            refresh_after_commit(task_ids=[t.pk for t in changed], place=False)
    return stale


@with_task_log_context
def task_report_completed(
    *,
    worker: Worker,
    task_id: int,
    epoch: int,
    files: list[dict[str, Any]],
    seeding: bool = False,
) -> Task:
    """Accept the finished download exactly once; a repeat for the same lease is a no-op.

    With `seeding` the data is complete and the worker keeps uploading (BitTorrent
    `seed-time`/`seed-ratio`): the task is `completed` with `seeding` set until a progress
    report says seeding stopped.
    """
    now = timezone.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if (
            task is not None
            and task.status == TaskStatus.COMPLETED
            and task.worker_id == worker.pk
            and task.epoch == epoch
        ):
            return task
        task = _leased_task(worker, task_id, epoch)
        size = sum(int(f["size"]) for f in files)
        task.status = TaskStatus.COMPLETED
        task.result = files
        task.seeding = seeding
        task.phase = "seeding" if seeding else ""
        task.files = [
            {**f, "completed": f.get("size", 0)} if f.get("selected", True) else f
            for f in task.files or []
        ]
        task.total_length = max(task.total_length, size)
        task.completed_length = task.total_length
        task.download_speed = 0
        task.upload_speed = 0
        task.connections = 0
        task.finished_at = now
        task.started_at = task.started_at or now
        task.error_code = None
        task.error_message = ""
        task.error_class = ErrorClass.NONE
        task.save()
        _event(task, TaskEventKind.COMPLETED, worker, f"{len(files)} file(s), {size} bytes", now)
        webhook_enqueue_task_event(task, now=now)
        logger.info(
            "task %s completed on %s: %d file(s), %d bytes", task_id, worker.name, len(files), size
        )
        refresh_after_commit(task_ids=[task.pk], place=True)
    return task


@with_task_log_context
def task_report_failed(
    *, worker: Worker, task_id: int, epoch: int, error_code: int | None, error_message: str
) -> Task:
    """Class the error: permanent fails now; otherwise retry (later, or elsewhere)."""
    now = timezone.now()
    config = settings.ARIACLUSTER.task_assignment
    with transaction.atomic():
        task = _leased_task(worker, task_id, epoch)
        error_class = classify_error(error_code)
        reason = describe_error(error_code, error_message)
        task.attempts += 1
        task.error_code = error_code
        task.error_message = reason
        task.error_class = error_class
        task.download_speed = 0
        task.connections = 0
        if error_class == ErrorClass.PERMANENT or task.attempts > config.max_retries:
            task.status = TaskStatus.FAILED
            task.finished_at = now
            why = (
                "permanent error"
                if error_class == ErrorClass.PERMANENT
                else (f"retries exhausted ({task.attempts - 1} of {config.max_retries})")
            )
            _event(task, TaskEventKind.FAILED, worker, f"{why}: {reason}", now)
            webhook_enqueue_task_event(task, now=now)
            place = True
        else:
            task.status = TaskStatus.PENDING
            task.worker = None
            if error_class == ErrorClass.WORKER_LOCAL:
                task.avoid_workers = [*task.avoid_workers, worker.pk]
                task.not_before = None
                task.pending_reason = f"moving off {worker.name} after a local error"
            else:
                task.not_before = now + timedelta(seconds=retry_wait(task.attempts))
                task.pending_reason = (
                    f"retry {task.attempts} of {config.max_retries} after {reason}"
                )
            _event(
                task,
                TaskEventKind.RETRIED,
                worker,
                f"attempt {task.attempts} failed: {reason}",
                now,
            )
            place = True
        task.save()
        logger.log(
            logging.WARNING if task.status == TaskStatus.FAILED else logging.INFO,
            "task %s attempt %s failed on %s (%s): %s; now %s",
            task_id,
            task.attempts,
            worker.name,
            error_class,
            reason,
            task.status,
        )
        refresh_after_commit(task_ids=[task.pk], place=place)
    return task


@with_task_log_context
def task_report_released(*, worker: Worker, task_id: int, epoch: int, reason: str) -> Task:
    """The agent gives the task back unfinished; it is placed again (not counted as a try)."""
    now = timezone.now()
    with transaction.atomic():
        task = _leased_task(worker, task_id, epoch)
        paused = task.status == TaskStatus.PAUSED
        task.status = TaskStatus.PAUSED if paused else TaskStatus.PENDING
        task.worker = None
        task.epoch += 1
        task.download_speed = 0
        task.connections = 0
        task.pending_reason = f"released by {worker.name}: {reason}"[:255]
        task.save()
        _event(task, TaskEventKind.RELEASED, worker, reason, now)
        logger.info("task %s released by %s: %s", task_id, worker.name, reason)
        refresh_after_commit(task_ids=[task.pk], place=not paused)
    return task


def lease_expire_stale(*, now: datetime | None = None) -> list[int]:
    """Mark silent workers offline and return their tasks to the queue with a new epoch.

    Safe to run in several processes at once: each worker is flipped by a conditional UPDATE, and
    only the process whose UPDATE matched moves that worker's tasks. Within one heartbeat timeout
    of this process starting, nothing expires (the dispatcher may itself have been down).
    """
    now = now or timezone.now()
    timeout = settings.ARIACLUSTER.worker_management.heartbeat_timeout
    if time.monotonic() - PROCESS_STARTED < timeout and not getattr(
        settings, "ARIACLUSTER_NO_STARTUP_GRACE", False
    ):
        return []
    cutoff = now - timedelta(seconds=timeout)
    silent = Q(last_heartbeat__lt=cutoff) | Q(last_heartbeat__isnull=True)
    expired: list[int] = []
    for worker in Worker.objects.filter(
        silent, status__in=[*LIVE_WORKER_STATUSES, WorkerStatus.ERROR]
    ):
        with transaction.atomic():
            flipped = Worker.objects.filter(silent, pk=worker.pk, status=worker.status).update(
                status=WorkerStatus.OFFLINE, status_changed_at=now
            )
            if not flipped:
                continue
            held = list(
                Task.objects.select_for_update().filter(worker=worker, status__in=LEASED_STATUSES)
            )
            for task in held:
                _event(
                    task,
                    TaskEventKind.LEASE_EXPIRED,
                    worker,
                    f"no heartbeat from {worker.name} for {timeout:g} s",
                    now,
                )
            _fail_poison_tasks(held, worker, now)
            Task.objects.filter(worker=worker, status__in=ACTIVE_STATUSES).update(
                status=TaskStatus.PENDING,
                worker=None,
                epoch=F("epoch") + 1,
                download_speed=0,
                connections=0,
                updated_at=now,
                pending_reason=f"lease expired on {worker.name}",
            )
            Task.objects.filter(worker=worker, status=TaskStatus.PAUSED).update(
                worker=None,
                epoch=F("epoch") + 1,
                updated_at=now,
            )
            expired.append(worker.pk)
            transaction.on_commit(partial(broadcast.broadcast_task_updated, [t.pk for t in held]))
    if expired:
        logger.warning("workers %s went silent; their tasks were returned to the queue", expired)
        broadcast.broadcast_worker_updated(expired)
    return expired


def retry_wait(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based), per `task_assignment.retry_backoff`."""
    config = settings.ARIACLUSTER.task_assignment
    base = float(config.retry_delay)
    if config.retry_backoff == "fixed":
        return base
    ceiling = min(float(config.retry_delay_max), base * 2.0 ** max(0, attempt - 1))
    # Jitter spreads the retries of many tasks that failed together (a source went down).
    return ceiling * random.uniform(0.5, 1.0)


def _fail_poison_tasks(held: list[Task], worker: Worker, now: datetime) -> None:
    """Fail tasks whose workers went silent `max_lease_losses` times: they may be the cause."""
    bound = settings.ARIACLUSTER.task_assignment.max_lease_losses
    active = [t.pk for t in held if t.status in ACTIVE_STATUSES]
    losses = dict(
        TaskEvent.objects.filter(task_id__in=active, kind=TaskEventKind.LEASE_EXPIRED)
        .values_list("task_id")
        .annotate(n=Count("id"))
        .values_list("task_id", "n")
    )
    for task in held:
        if losses.get(task.pk, 0) < bound:
            continue
        reason = f"its worker went silent {losses[task.pk]} times while running it (poison task?)"
        Task.objects.filter(pk=task.pk).update(
            status=TaskStatus.FAILED,
            worker=None,
            epoch=F("epoch") + 1,
            finished_at=now,
            updated_at=now,
            download_speed=0,
            connections=0,
            error_message=reason,
            error_class=ErrorClass.PERMANENT,
        )
        _event(task, TaskEventKind.FAILED, worker, reason, now)
        task.refresh_from_db()
        webhook_enqueue_task_event(task, now=now)


def worker_remove_offline(*, now: datetime | None = None) -> int:
    """With `auto_remove_offline`, delete workers offline for over `offline_threshold`."""
    config = settings.ARIACLUSTER.worker_management
    if not config.auto_remove_offline:
        return 0
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=config.offline_threshold)
    removed, _ = Worker.objects.filter(
        status=WorkerStatus.OFFLINE, status_changed_at__lt=cutoff
    ).delete()
    return removed
