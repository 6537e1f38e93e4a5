"""The placement runner: passes off the request path, one at a time, requests coalesced."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async as sync_to_async

from ariacluster.process_metrics import PLACEMENT_PASS, PLACEMENT_WAIT
from dispatcher import placement, services
from dispatcher.models import Task, TaskStatus
from workers_app.services import Registration


def _histogram_count(histogram: object) -> float:
    for metric in histogram.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    raise AssertionError("histogram has no _count sample")


@pytest.mark.django_db
def test_without_a_server_loop_a_request_places_inline(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("a", max_tasks=2)
    task = services.task_create(url="http://e.x/1.bin")
    waits_before = _histogram_count(PLACEMENT_WAIT)

    placement.PlacementRunner().request()

    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    assert _histogram_count(PLACEMENT_WAIT) == waits_before + 1


@pytest.mark.django_db(transaction=True)
def test_requests_during_a_pass_fold_into_one_more_pass_run_on_the_runner_thread(
    register_worker: Callable[..., Registration], monkeypatch: pytest.MonkeyPatch
) -> None:
    register_worker("a", max_tasks=50)
    for i in range(30):
        services.task_create(url=f"http://e.x/{i}.bin")
    runner = placement.PlacementRunner()
    threads: list[str] = []
    first_pass_entered = threading.Event()
    release_first_pass = threading.Event()
    real_pass = placement.task_assign_pending

    def observed_pass(**kwargs: bool) -> int:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            first_pass_entered.set()
            release_first_pass.wait(10)
        return real_pass(**kwargs)

    monkeypatch.setattr(placement, "task_assign_pending", observed_pass)

    async def scenario() -> None:
        serving = asyncio.create_task(runner.serve())
        await asyncio.sleep(0)
        runner.request()
        assert await sync_to_async(first_pass_entered.wait)(10)
        # Forty requests while the first pass is busy: from the loop and from other threads.
        for _ in range(20):
            runner.request()
        await sync_to_async(lambda: [runner.request() for _ in range(20)])()
        release_first_pass.set()
        for _ in range(200):
            await asyncio.sleep(0.02)
            queued = await sync_to_async(Task.objects.filter(status=TaskStatus.QUEUED).count)()
            if queued == 30 and len(threads) >= 2:
                break
        await asyncio.sleep(0.2)  # room for any extra pass to show up
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    passes_before = _histogram_count(PLACEMENT_PASS)
    asyncio.run(scenario())

    assert Task.objects.filter(status=TaskStatus.QUEUED).count() == 30
    assert len(threads) == 2, threads
    assert all(name.startswith("placement") for name in threads)
    assert _histogram_count(PLACEMENT_PASS) == passes_before + 2


@pytest.mark.django_db
def test_a_request_after_the_server_loop_closed_places_inline(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("a", max_tasks=1)
    task = services.task_create(url="http://e.x/1.bin")
    runner = placement.PlacementRunner()

    # The process's loop stops and closes with the runner still attached (its task never
    # got to run its cleanup), as at shutdown.
    loop = asyncio.new_event_loop()
    serving = loop.create_task(runner.serve())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    assert not serving.done()

    runner.request()

    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED


@pytest.mark.django_db
def test_a_failing_maintenance_duty_does_not_stop_the_others(
    register_worker: Callable[..., Registration],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dispatcher import maintenance

    def broken() -> None:
        raise RuntimeError("lease expiry exploded")

    monkeypatch.setattr(maintenance, "lease_expire_stale", broken)
    register_worker("a", max_tasks=1)
    task = services.task_create(url="http://e.x/1.bin")

    done = maintenance.maintenance_tick()

    assert done["placed"] == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    assert "maintenance: lease expiry failed" in caplog.text
