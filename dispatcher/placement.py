"""Placement: put due pending tasks on live workers with free slots, atomically.

Safe with several dispatcher processes: on PostgreSQL the live worker rows and the pending task
rows are locked with ``FOR UPDATE SKIP LOCKED`` (a second process skips what the first holds);
on SQLite every transaction takes the write lock at BEGIN (``transaction_mode=IMMEDIATE``), so
rounds run one after another. The task UPDATE is conditional on ``status='pending'`` as well.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from ariacluster.process_metrics import PLACEMENT_PASS, PLACEMENT_WAIT
from dispatcher import broadcast
from dispatcher.models import ACTIVE_STATUSES, Task, TaskEvent, TaskEventKind, TaskKind, TaskStatus
from workers_app.models import LIVE_WORKER_STATUSES, Worker

logger = logging.getLogger(__name__)

ROUND_SIZE = 200
FIRST_PAGE_MIN = 16
MAX_PAGES = 10
_EPOCH_START = datetime(1970, 1, 1, tzinfo=timezone.get_fixed_timezone(0))


@dataclass
class _Slot:
    worker: Worker
    active: int
    free: int
    # Order of this slot's latest assignment in the current pass: every worker used in one
    # pass gets the same last_assigned_at, so round-robin needs this to keep rotating.
    turn: int = 0


def tag_matches(tag: str, worker_tags: dict[str, str]) -> bool:
    """``key=value`` / ``key:value`` needs that tag value; a bare ``key`` needs the key."""
    for separator in ("=", ":"):
        if separator in tag:
            key, value = tag.split(separator, 1)
            return worker_tags.get(key.strip()) == value.strip()
    return tag in worker_tags or tag in worker_tags.values()


def worker_fits(task: Task, worker: Worker) -> bool:
    """Capabilities, tags, known size against free disk, and workers this task must avoid."""
    if task.kind in (TaskKind.MAGNET, TaskKind.TORRENT) and not worker.supports_bt:
        return False
    if task.kind == TaskKind.METALINK and not worker.supports_metalink:
        return False
    if worker.pk in (task.avoid_workers or []):
        return False
    remaining = task.total_length - task.completed_length
    if remaining > 0 and worker.free_disk > 0 and worker.free_disk < remaining:
        return False
    tags = worker.tags
    return all(tag_matches(str(tag), tags) for tag in task.tags or [])


def unplaceable_reason(task: Task, workers: Sequence[Worker]) -> str:
    """Why no worker can take this task right now, in words for the task list."""
    if not workers:
        return "no online worker"
    if task.kind in (TaskKind.MAGNET, TaskKind.TORRENT) and not any(w.supports_bt for w in workers):
        return "no online worker supports BitTorrent"
    if task.kind == TaskKind.METALINK and not any(w.supports_metalink for w in workers):
        return "no online worker supports Metalink"
    if task.tags and not any(all(tag_matches(str(t), w.tags) for t in task.tags) for w in workers):
        return f"no online worker has tags {', '.join(map(str, task.tags))}"
    if not any(worker_fits(task, w) for w in workers):
        return "no online worker can take it (disk space or excluded after a local error)"
    return "waiting for a free slot"


def _choose(strategy: str, task: Task, slots: list[_Slot]) -> _Slot:
    def rotation(slot: _Slot) -> tuple[datetime, int, str]:
        return (slot.worker.last_assigned_at or _EPOCH_START, slot.turn, slot.worker.name)

    if strategy == "random":
        return random.choice(slots)
    if strategy == "round_robin":
        return min(slots, key=rotation)
    if strategy == "tags" and not task.tags:
        # Untagged work goes to untagged workers first, keeping tagged ones for tagged work.
        untagged = [s for s in slots if not s.worker.tags]
        slots = untagged or slots
    return min(slots, key=lambda s: (s.active / max(1, s.worker.max_tasks), *rotation(s)))


def live_workers(now: datetime) -> QuerySet[Worker]:
    cutoff = now - timedelta(seconds=settings.ARIACLUSTER.worker_management.heartbeat_timeout)
    return Worker.objects.filter(
        status__in=LIVE_WORKER_STATUSES, draining=False, last_heartbeat__gte=cutoff
    ).order_by("id")


def _locking(qs: QuerySet[Task] | QuerySet[Worker]) -> QuerySet:  # type: ignore[type-arg]
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True, of=("self",))
    return qs


def _assign_one(
    task: Task,
    slots: list[_Slot],
    workers: list[Worker],
    strategy: str,
    now: datetime,
    *,
    record_reason: bool = True,
) -> bool:
    """Lease `task` to the best fitting slot; on no fit record why. True if assigned."""
    candidates = [s for s in slots if s.free > 0 and worker_fits(task, s.worker)]
    if not candidates:
        if not record_reason:
            return False
        reason = unplaceable_reason(task, workers)
        if task.pending_reason != reason:
            Task.objects.filter(pk=task.pk, status=TaskStatus.PENDING).update(pending_reason=reason)
        return False
    slot = _choose(strategy, task, candidates)
    # Conditional on still pending: a cancel or another process may have won.
    updated = Task.objects.filter(pk=task.pk, status=TaskStatus.PENDING).update(
        status=TaskStatus.QUEUED,
        worker=slot.worker,
        epoch=F("epoch") + 1,
        assigned_at=now,
        pending_reason="",
        not_before=None,
        updated_at=now,
    )
    if not updated:
        return False
    due_since = max(task.updated_at, task.not_before or task.updated_at)
    PLACEMENT_WAIT.observe(max(0.0, (now - due_since).total_seconds()))
    task.epoch += 1
    task.status = TaskStatus.QUEUED
    task.worker = slot.worker
    slot.free -= 1
    slot.active += 1
    slot.worker.last_assigned_at = now
    slot.turn = max(s.turn for s in slots) + 1
    return True


def _assign_round(now: datetime, *, survey: bool = True) -> tuple[int, bool]:
    """One transaction of placement. Returns (tasks assigned, whether to run another round).

    With `survey`, the first page of the queue is read even when no slot is free, to record why
    those tasks wait; without it a pass with no free slot reads no task at all.
    """
    strategy = settings.ARIACLUSTER.task_assignment.strategy
    with transaction.atomic():
        workers = list(_locking(live_workers(now)))
        # Workers another process holds were skipped (SKIP LOCKED): a reason computed from this
        # partial view ("no online worker") would be wrong, and rewriting it costs a write a task.
        sees_all = len(workers) == live_workers(now).count()
        counts = dict(
            Task.objects.filter(worker__in=workers, status__in=ACTIVE_STATUSES)
            .values_list("worker")
            .annotate(n=Count("id"))
            .values_list("worker", "n")
        )
        slots = [_Slot(w, counts.get(w.pk, 0), w.max_tasks - counts.get(w.pk, 0)) for w in workers]
        due = Q(not_before__isnull=True) | Q(not_before__lte=now)
        pending = Task.objects.filter(due, status=TaskStatus.PENDING).order_by(
            "-priority", "created_at", "id"
        )
        assigned: list[tuple[Task, Worker]] = []
        considered = 0
        full_page = False
        # The first page is sized to the free slots: one slot freed by a completion should not
        # cost reading (and locking) a full page of the queue. A survey reads a full page.
        free = sum(max(0, s.free) for s in slots)
        limit = ROUND_SIZE if survey else min(ROUND_SIZE, max(FIRST_PAGE_MIN, 4 * free))
        for page in range(MAX_PAGES):
            # Page 0 is read even with no free slot, to record why tasks wait; not when another
            # process holds workers, or locking tasks we cannot place would starve that process.
            if not any(s.free > 0 for s in slots) and (page > 0 or not sees_all or not survey):
                break
            tasks = list(_locking(pending)[considered : considered + limit])
            considered += len(tasks)
            for task in tasks:
                if _assign_one(task, slots, workers, strategy, now, record_reason=sees_all):
                    assigned.append((task, task.worker))  # type: ignore[arg-type]
            full_page = len(tasks) == limit
            if not full_page:
                break
            limit = ROUND_SIZE
        if assigned:
            TaskEvent.objects.bulk_create(
                TaskEvent(
                    task=t,
                    kind=TaskEventKind.ASSIGNED,
                    worker=w,
                    worker_name=w.name,
                    epoch=t.epoch,
                    created_at=now,
                )
                for t, w in assigned
            )
            used = {w.pk for _, w in assigned}
            Worker.objects.filter(pk__in=used).update(last_assigned_at=now)
            transaction.on_commit(lambda: _announce(assigned))
        more = full_page and any(s.free > 0 for s in slots) and bool(assigned)
        return len(assigned), more


def _announce(assigned: list[tuple[Task, Worker]]) -> None:
    from dispatcher.selectors import assignment_payload

    for task, worker in assigned:
        logger.info(
            "task %s assigned to %s (epoch %s)",
            task.pk,
            worker.name,
            task.epoch,
            extra={"task_id": task.pk, "worker": worker.name},
        )
        broadcast.send_to_agent(worker.pk, {"type": "assign", "task": assignment_payload(task)})
    broadcast.broadcast_task_updated([t.pk for t, _ in assigned])


def task_assign_pending(*, now: datetime | None = None, survey: bool = True) -> int:
    """Place as many due pending tasks as the free slots allow; return how many were placed.

    `survey=False` (the runner's passes after each write) skips recording why tasks wait when
    every slot is busy; the maintenance tick's pass and direct calls keep those reasons fresh.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    total = 0
    for _ in range(100):
        count, more = _assign_round(now, survey=survey and not total)
        total += count
        if not more:
            break
    PLACEMENT_PASS.observe(time.perf_counter() - started)
    if total:
        logger.debug("placed %d task(s)", total)
    return total


class PlacementRunner:
    """One placement pass at a time per process, off the request path, with requests coalesced.

    Every write that may free a slot or queue work asks for a pass after it commits. Running the
    pass inline made each agent report and API call wait for a full pass before its answer, and
    concurrent passes of one process fought over the same rows and locks. Instead, inside a
    server process an asyncio
    task owns placement: a request only sets an event; the task runs a pass in its own thread and
    its own database connection; requests that arrive during a pass fold into a single next pass.
    Without a running server loop (management commands, tests, benchmarks) a request places
    inline, so nothing depends on the loop being there.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._lock = threading.Lock()
        # One thread for placement and maintenance of this process: passes never overlap.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="placement")

    def request(self) -> None:
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
                return
            except RuntimeError:  # the loop closed since it was attached
                pass
        task_assign_pending()

    def run_in_background(self, func: Any) -> Any:
        """`func` as a coroutine function run on this runner's thread (with DB cleanup)."""
        return database_sync_to_async(func, thread_sensitive=False, executor=self.executor)

    async def serve(self) -> None:
        """Run passes on request until cancelled; never dies on errors."""
        wake = asyncio.Event()
        with self._lock:
            self._loop, self._wake = asyncio.get_running_loop(), wake
        place = self.run_in_background(lambda: task_assign_pending(survey=False))
        try:
            while True:
                await wake.wait()
                wake.clear()
                try:
                    await place()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("placement pass failed")
        finally:
            with self._lock:
                self._loop, self._wake = None, None


runner = PlacementRunner()


def refresh_after_commit(
    *, task_ids: Sequence[int] = (), worker_ids: Sequence[int] = (), place: bool = True
) -> None:
    """After the current transaction commits: tell dashboards what changed, then place.

    The one hook every write uses when it may have freed a slot or queued work.
    """

    def run() -> None:
        broadcast.broadcast_task_updated(list(task_ids))
        broadcast.broadcast_worker_updated(list(worker_ids))
        if place:
            runner.request()

    transaction.on_commit(run)
