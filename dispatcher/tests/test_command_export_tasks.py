"""`export_tasks`: JSON and CSV, filtered like the task list."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from dispatcher import services
from dispatcher.models import Task, TaskStatus
from dispatcher.tests.commands import run_command

pytestmark = pytest.mark.django_db


def _tasks() -> list[Task]:
    a = services.task_create(uris=["http://a.x/f", "http://b.x/f"], tags=["iso"])
    b = services.task_create(url="http://e.x/g")
    Task.objects.filter(pk=b.pk).update(status=TaskStatus.FAILED, error_message="404 Not Found")
    return [a, b]


def test_json_export_lists_every_task_in_id_order() -> None:
    a, b = _tasks()

    rows = json.loads(run_command("export_tasks").stdout)

    assert [r["id"] for r in rows] == [a.pk, b.pk]
    assert rows[0]["uris"] == ["http://a.x/f", "http://b.x/f"]
    assert rows[1]["status"] == "failed"
    assert rows[1]["error_message"] == "404 Not Found"


def test_filters_select_tasks_like_the_api() -> None:
    a, b = _tasks()

    failed = json.loads(run_command("export_tasks", "--status", "failed").stdout)
    tagged = json.loads(run_command("export_tasks", "--tag", "iso").stdout)

    assert [r["id"] for r in failed] == [b.pk]
    assert [r["id"] for r in tagged] == [a.pk]


def test_csv_export_has_a_header_and_one_row_per_task(tmp_path: Path) -> None:
    a, _ = _tasks()
    path = tmp_path / "tasks.csv"

    output = run_command("export_tasks", "--format", "csv", "--output", str(path)).stdout

    assert f"Wrote 2 task(s) to {path}" in output
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == 2
    assert rows[0]["id"] == str(a.pk)
    assert rows[0]["uris"] == "http://a.x/f http://b.x/f"


def test_an_empty_export_is_an_empty_json_array() -> None:
    assert json.loads(run_command("export_tasks").stdout) == []
