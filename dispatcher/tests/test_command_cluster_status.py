"""`cluster_status`: a readable summary, and `--json` equal to GET /api/status."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from dispatcher import services
from dispatcher.placement import task_assign_pending
from dispatcher.selectors import cluster_status
from dispatcher.tests.commands import run_command
from workers_app.services import Registration

pytestmark = pytest.mark.django_db


def test_summary_names_task_counts_workers_and_slots(
    register_worker: Callable[..., Registration],
) -> None:
    register_worker("worker1", max_tasks=2)
    for i in range(3):
        services.task_create(url=f"http://e.x/{i}")
    task_assign_pending()

    output = run_command("cluster_status").stdout

    assert "Tasks:   3 (1 pending, 2 queued)" in output
    assert "Queue:   1 pending" in output
    assert "Workers: 1 (1 busy)" in output
    assert "Slots:   2 of 2 in use" in output
    assert "Speed:   0 B/s down" in output


def test_json_output_is_the_status_selector() -> None:
    services.task_create(url="http://e.x/a")

    assert json.loads(run_command("cluster_status", "--json").stdout) == cluster_status()


def test_an_empty_cluster_says_none() -> None:
    output = run_command("cluster_status").stdout

    assert "Tasks:   0 (none)" in output
    assert "Workers: 0 (none)" in output
