"""Placement: strategies, the filters every strategy obeys, and the order tasks are placed in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dispatcher import services
from dispatcher.models import Task, TaskKind, TaskStatus
from dispatcher.placement import task_assign_pending
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

MAGNET = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"


def make_tasks(count: int, **fields: Any) -> list[Task]:
    return [services.task_create(url=f"http://e.x/{i}.bin", **fields) for i in range(count)]


def placement() -> dict[int, str]:
    """Task id → worker name, for every placed task."""
    return {
        t.pk: t.worker.name
        for t in Task.objects.filter(worker__isnull=False).select_related("worker")
    }


def load() -> Counter[str]:
    return Counter(placement().values())


@pytest.fixture
def strategy(configure: Callable[..., None]) -> Callable[[str], None]:
    return lambda name: configure(task_assignment={"strategy": name})


def test_least_loaded_spreads_tasks_by_load(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("a", max_tasks=4)
    register_worker("b", max_tasks=4)
    register_worker("c", max_tasks=8)
    make_tasks(8)

    assert task_assign_pending() == 8

    # Load is the share of slots in use: c (8 slots) takes twice what a and b take.
    assert load() == {"a": 2, "b": 2, "c": 4}


def test_least_loaded_counts_tasks_already_running(
    register_worker: Callable[..., Registration],
) -> None:
    busy = register_worker("a", max_tasks=4).worker
    register_worker("b", max_tasks=4)
    Worker.objects.filter(name="b").update(draining=True)
    make_tasks(2)
    task_assign_pending()
    Worker.objects.filter(name="b").update(draining=False)
    make_tasks(2)

    task_assign_pending()

    assert Task.objects.filter(worker=busy).count() == 2
    assert load() == {"a": 2, "b": 2}


def test_round_robin_rotates_over_workers(
    register_worker: Callable[..., Registration], strategy: Callable[[str], None]
) -> None:
    strategy("round_robin")
    for name in ("a", "b", "c"):
        register_worker(name, max_tasks=10)
    order = []

    for i in range(6):
        task = services.task_create(url=f"http://e.x/{i}")
        task_assign_pending()
        task.refresh_from_db()
        order.append(task.worker.name)

    assert order == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_rotates_within_one_placement_pass(
    register_worker: Callable[..., Registration], strategy: Callable[[str], None]
) -> None:
    strategy("round_robin")
    register_worker("a", max_tasks=10)
    register_worker("b", max_tasks=10)
    make_tasks(4)

    task_assign_pending()

    assert load() == {"a": 2, "b": 2}


def test_random_picks_only_fitting_live_workers(
    register_worker: Callable[..., Registration],
    strategy: Callable[[str], None],
    make_live: Callable[..., Worker],
) -> None:
    strategy("random")
    register_worker("home1", max_tasks=40, capabilities={"tags": {"site": "home"}})
    register_worker("home2", max_tasks=40, capabilities={"tags": {"site": "home"}})
    register_worker("office", max_tasks=40, capabilities={"tags": {"site": "office"}})
    drained = register_worker(
        "home-drained", max_tasks=40, capabilities={"tags": {"site": "home"}}
    ).worker
    Worker.objects.filter(pk=drained.pk).update(draining=True)
    stale = register_worker(
        "home-stale", max_tasks=40, capabilities={"tags": {"site": "home"}}
    ).worker
    make_live(stale, at=timezone.now() - timedelta(minutes=5))
    make_tasks(30, tags=["site=home"])

    assert task_assign_pending() == 30

    spread = load()
    assert set(spread) == {"home1", "home2"}
    assert sum(spread.values()) == 30


def test_tags_strategy_puts_tagged_tasks_only_on_matching_workers(
    register_worker: Callable[..., Registration], strategy: Callable[[str], None]
) -> None:
    strategy("tags")
    register_worker("gpu", max_tasks=5, capabilities={"tags": {"gpu": "yes", "site": "lab"}})
    register_worker("plain", max_tasks=5)
    tagged = make_tasks(3, tags=["gpu"])
    in_lab = services.task_create(url="http://e.x/lab", tags=["site:lab"])
    elsewhere = services.task_create(url="http://e.x/home", tags=["site=home"])

    task_assign_pending()

    for task in [*tagged, in_lab]:
        task.refresh_from_db()
        assert task.worker.name == "gpu"
    elsewhere.refresh_from_db()
    assert elsewhere.status == TaskStatus.PENDING
    assert elsewhere.pending_reason == "no online worker has tags site=home"


def test_tags_strategy_prefers_untagged_workers_for_untagged_tasks(
    register_worker: Callable[..., Registration], strategy: Callable[[str], None]
) -> None:
    strategy("tags")
    register_worker("gpu", max_tasks=5, capabilities={"tags": {"gpu": "yes"}})
    register_worker("plain", max_tasks=2)
    make_tasks(3)

    task_assign_pending()

    # Untagged work fills the untagged worker first and only then overflows.
    assert load() == {"plain": 2, "gpu": 1}


@pytest.mark.parametrize("name", ["least_loaded", "round_robin", "random", "tags"])
def test_no_strategy_places_on_stale_offline_draining_or_full_workers(
    register_worker: Callable[..., Registration],
    strategy: Callable[[str], None],
    make_live: Callable[..., Worker],
    name: str,
) -> None:
    strategy(name)
    register_worker("good", max_tasks=3)
    make_live(register_worker("stale").worker, at=timezone.now() - timedelta(seconds=31))
    Worker.objects.filter(pk=register_worker("offline").worker.pk).update(
        status=WorkerStatus.OFFLINE
    )
    Worker.objects.filter(pk=register_worker("errored").worker.pk).update(status=WorkerStatus.ERROR)
    Worker.objects.filter(pk=register_worker("draining").worker.pk).update(draining=True)
    make_tasks(10)

    assert task_assign_pending() == 3

    assert load() == {"good": 3}
    waiting = Task.objects.filter(status=TaskStatus.PENDING)
    assert waiting.count() == 7
    assert {t.pending_reason for t in waiting} == {"waiting for a free slot"}


def test_a_worker_with_a_recent_heartbeat_just_inside_the_timeout_is_live(
    register_worker: Callable[..., Registration], make_live: Callable[..., Worker]
) -> None:
    make_live(register_worker("edge").worker, at=timezone.now() - timedelta(seconds=29))
    make_tasks(1)

    assert task_assign_pending() == 1


def test_with_no_live_worker_the_task_waits_with_a_reason(db: None) -> None:
    task = services.task_create(url="http://e.x/1")

    assert task_assign_pending() == 0

    task.refresh_from_db()
    assert task.status == TaskStatus.PENDING
    assert task.pending_reason == "no online worker"


def test_tasks_are_placed_by_priority_then_age(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("only", max_tasks=3)
    old_low = services.task_create(url="http://e.x/old-low", priority="low")
    old_normal = services.task_create(url="http://e.x/old-normal")
    new_normal = services.task_create(url="http://e.x/new-normal")
    urgent = services.task_create(url="http://e.x/urgent", priority="urgent")
    high = services.task_create(url="http://e.x/high", priority=3)

    task_assign_pending()

    placed = set(Task.objects.filter(status=TaskStatus.QUEUED).values_list("pk", flat=True))
    assert placed == {urgent.pk, high.pk, old_normal.pk}
    assert {new_normal.pk, old_low.pk}.isdisjoint(placed)


def test_placement_never_exceeds_max_tasks(
    register_worker: Callable[..., Registration],
) -> None:
    workers = [register_worker(f"w{i}", max_tasks=i + 1).worker for i in range(3)]
    make_tasks(20)

    for _ in range(3):
        task_assign_pending()

    for worker in workers:
        active = Task.objects.filter(worker=worker, status__in=["queued", "downloading"])
        assert active.count() == worker.max_tasks
    assert Task.objects.filter(status=TaskStatus.PENDING).count() == 14


def test_a_freed_slot_is_filled_on_the_next_pass(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("only", max_tasks=1)
    first, second = make_tasks(2)
    task_assign_pending()

    services.task_cancel(task=Task.objects.get(pk=first.pk))
    task_assign_pending()

    second.refresh_from_db()
    assert second.status == TaskStatus.QUEUED


def test_bittorrent_tasks_go_only_to_workers_that_support_it(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("nobt", capabilities={"supports_bt": False})
    magnet = services.task_create(url=MAGNET)

    assert task_assign_pending() == 0
    magnet.refresh_from_db()
    assert magnet.pending_reason == "no online worker supports BitTorrent"

    register_worker("bt", capabilities={"supports_bt": True})
    assert task_assign_pending() == 1
    magnet.refresh_from_db()
    assert magnet.worker.name == "bt"


def test_metalink_tasks_go_only_to_workers_that_support_it(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("nometalink", capabilities={"supports_metalink": False})
    task = Task.objects.create(kind=TaskKind.METALINK, uris=["http://e.x/f.meta4"])

    assert task_assign_pending() == 0
    task.refresh_from_db()
    assert task.pending_reason == "no online worker supports Metalink"


def test_a_task_larger_than_a_workers_free_disk_goes_elsewhere(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("small", free_disk=1000)
    task = services.task_create(url="http://e.x/big")
    Task.objects.filter(pk=task.pk).update(total_length=5000)

    assert task_assign_pending() == 0
    register_worker("large", free_disk=10_000)
    assert task_assign_pending() == 1
    task.refresh_from_db()
    assert task.worker.name == "large"


def test_a_task_due_later_is_not_placed_until_then(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("only")
    task = services.task_create(url="http://e.x/later")
    Task.objects.filter(pk=task.pk).update(not_before=timezone.now() + timedelta(minutes=5))

    assert task_assign_pending() == 0
    Task.objects.filter(pk=task.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    assert task_assign_pending() == 1


def test_assignment_bumps_the_epoch_and_records_one_event(
    registration: Registration,
) -> None:
    task = services.task_create(url="http://e.x/1")

    task_assign_pending()
    task_assign_pending()

    task.refresh_from_db()
    assert (task.status, task.epoch, task.worker_id) == (
        TaskStatus.QUEUED,
        1,
        registration.worker.pk,
    )
    assert task.assigned_at is not None
    assert list(task.events.filter(kind="assigned").values_list("epoch", flat=True)) == [1]


def test_creating_a_task_places_it_right_after_commit(
    registration: Registration, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        task = services.task_create(url="http://e.x/1")

    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
