"""Reads: queries the API, dashboard, agent channel and commands share."""

from __future__ import annotations

import base64
from typing import Any

from django.db.models import Count, Min, Q, QuerySet, Sum

from dispatcher.models import (
    ACTIVE_STATUSES,
    LEASED_STATUSES,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskKind,
    TaskStatus,
    TaskUpload,
)
from workers_app.models import Worker, WorkerStatus


def agent_gid(task_id: int, epoch: int) -> str:
    """The GID the agent gives a task's root download (docs/protocol.md)."""
    return f"{task_id:012x}{epoch % 65536:04x}"


def assignment_payload(task: Task) -> dict[str, Any]:
    """What an agent needs to run a task: the `Assignment` of docs/protocol.md."""
    payload: dict[str, Any] = {
        "task_id": task.pk,
        "epoch": task.epoch,
        "kind": task.kind,
        "uris": list(task.uris),
        "options": dict(task.options or {}),
        "state": "pause" if task.status == TaskStatus.PAUSED else "run",
        "pause_for_selection": task.pause_for_selection,
    }
    if task.kind in (TaskKind.TORRENT, TaskKind.METALINK):
        upload = TaskUpload.objects.filter(task_id=task.pk).only("content", "kind").first()
        if upload is not None:
            payload[upload.kind] = base64.b64encode(bytes(upload.content)).decode("ascii")
    return payload


def worker_assignments(worker: Worker) -> list[dict[str, Any]]:
    """The authoritative list of tasks this worker must hold now."""
    tasks = Task.objects.filter(worker=worker, status__in=LEASED_STATUSES).order_by("pk")
    return [assignment_payload(t) for t in tasks]


def task_list(
    *,
    base: QuerySet[Task] | None = None,
    status: str | None = None,
    worker: str | None = None,
    tag: str | None = None,
    kind: str | None = None,
    search: str | None = None,
    sha256: str | None = None,
) -> QuerySet[Task]:
    """Tasks of `base` (default all, e.g. `tasks_visible_to(user)`), newest first, filtered;
    `worker` is an id or a name; `sha256` a result file's hash."""
    qs = (Task.objects.all() if base is None else base).select_related("worker")
    qs = qs.order_by("-created_at", "-id")
    if status:
        qs = qs.filter(status__in=[s.strip() for s in status.split(",") if s.strip()])
    if worker:
        qs = (
            qs.filter(worker_id=int(worker)) if worker.isdigit() else qs.filter(worker__name=worker)
        )
    if kind:
        qs = qs.filter(kind=kind)
    if tag:
        # JSON containment is not portable to SQLite; a quoted substring match is.
        qs = qs.filter(tags__icontains=f'"{tag}"')
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(uris__icontains=search))
    if sha256:
        # Hex digests are stored lower-case inside `result`; a quoted substring is exact.
        qs = qs.filter(result__icontains=f'"{sha256.lower()}"')
    return qs


def worker_slots_used(worker_ids: list[int]) -> dict[int, int]:
    """Active (queued + downloading) task counts per worker, counted from the task table."""
    rows = (
        Task.objects.filter(worker_id__in=worker_ids, status__in=ACTIVE_STATUSES)
        .values_list("worker_id")
        .annotate(n=Count("id"))
        .values_list("worker_id", "n")
    )
    return {worker_id: n for worker_id, n in rows if worker_id is not None}


def worker_display_status(worker: Worker, slots_used: int) -> str:
    """BUSY is derived: an online worker whose every slot is taken."""
    if worker.status == WorkerStatus.ONLINE and slots_used >= worker.max_tasks:
        return WorkerStatus.BUSY
    return worker.status


def cluster_status() -> dict[str, Any]:
    """Counts per task status and worker status, speed and queue length, in a few aggregates."""
    task_counts = {s.value: 0 for s in TaskStatus}
    for status, n in (
        Task.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    ):
        task_counts[status] = n
    workers = list(
        Worker.objects.all().only("id", "status", "max_tasks", "download_speed", "upload_speed")
    )
    used = worker_slots_used([w.pk for w in workers])
    worker_counts = {s.value: 0 for s in WorkerStatus}
    for w in workers:
        worker_counts[worker_display_status(w, used.get(w.pk, 0))] += 1
    speed = Task.objects.filter(status=TaskStatus.DOWNLOADING).aggregate(
        d=Sum("download_speed"), u=Sum("upload_speed")
    )
    return {
        "status": "ok",
        "tasks": task_counts,
        "total_tasks": sum(task_counts.values()),
        "workers": worker_counts,
        "total_workers": len(workers),
        "download_speed": speed["d"] or 0,
        "upload_speed": speed["u"] or 0,
        "queue_length": task_counts[TaskStatus.PENDING],
        "slots": {
            "used": sum(used.values()),
            "total": sum(w.max_tasks for w in workers if w.status == WorkerStatus.ONLINE),
        },
    }


def tasks_visible_to(user: Any) -> QuerySet[Task]:
    """Staff see every task; other users only the tasks they own.

    An API key acts as its user. A key with no user (`KeyPrincipal`) counts as staff with the
    `admin` scope; with `read`/`write` it owns nothing, so it sees the ownerless tasks (those
    created by ownerless keys), as does an anonymous caller when keys are not required.
    """
    qs = Task.objects.all()
    if getattr(user, "is_staff", False):
        return qs
    return qs.filter(owner_id=getattr(user, "pk", None))


def task_status_counts(qs: QuerySet[Task]) -> dict[str, int]:
    """Tasks per status in `qs`, every status present (one GROUP BY)."""
    counts = {s.value: 0 for s in TaskStatus}
    for status, n in qs.order_by().values_list("status").annotate(n=Count("id")):
        counts[status] = n
    return counts


def tasks_recently_failed(qs: QuerySet[Task], limit: int = 5) -> list[Task]:
    return list(
        qs.filter(status=TaskStatus.FAILED)
        .select_related("worker")
        .order_by("-finished_at", "-id")[:limit]
    )


def workers_with_load(ids: list[int] | None = None) -> list[Worker]:
    """Workers (all, or those in `ids`) with `slots_active`, `display_status` and
    `current_task_ids` set, in three queries whatever their number."""
    qs = Worker.objects.all()
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    workers = list(qs)
    pks = [w.pk for w in workers]
    used = worker_slots_used(pks)
    held: dict[int, list[int]] = {}
    for task_id, worker_id in (
        Task.objects.filter(worker_id__in=pks, status__in=LEASED_STATUSES)
        .order_by("pk")
        .values_list("pk", "worker_id")
    ):
        held.setdefault(worker_id, []).append(task_id)
    for w in workers:
        w.slots_active = used.get(w.pk, 0)  # type: ignore[attr-defined]
        w.display_status = worker_display_status(w, w.slots_active)  # type: ignore[attr-defined]
        w.current_task_ids = held.get(w.pk, [])  # type: ignore[attr-defined]
    return workers


def task_totals() -> dict[str, Any]:
    """Figures `/metrics` adds to `cluster_status`, in four aggregate queries.

    `oldest_pending_at` is the creation time of the oldest pending task (None when the queue is
    empty); `downloaded_bytes` sums `completed_length` of completed tasks still in the
    database; `retries` counts retry events (automatic and requested); `failed_by_class` counts
    failed tasks per error class.
    """
    oldest = Task.objects.filter(status=TaskStatus.PENDING).aggregate(at=Min("created_at"))["at"]
    downloaded = Task.objects.filter(status=TaskStatus.COMPLETED).aggregate(
        n=Sum("completed_length")
    )["n"]
    failed = dict(
        Task.objects.filter(status=TaskStatus.FAILED)
        .order_by()
        .values_list("error_class")
        .annotate(n=Count("id"))
        .values_list("error_class", "n")
    )
    return {
        "oldest_pending_at": oldest,
        "downloaded_bytes": downloaded or 0,
        "retries": TaskEvent.objects.filter(kind=TaskEventKind.RETRIED).count(),
        "failed_by_class": failed,
    }
