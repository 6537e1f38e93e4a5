"""Write tasks as JSON or CSV (to stdout or a file), filtered like the task list."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dispatcher.management.progress import Progress
from dispatcher.models import Task
from dispatcher.selectors import task_list

CSV_COLUMNS = (
    "id",
    "name",
    "status",
    "kind",
    "priority",
    "uris",
    "tags",
    "worker",
    "total_length",
    "completed_length",
    "attempts",
    "error_class",
    "error_message",
    "created_at",
    "finished_at",
)


def task_row(task: Task) -> dict[str, Any]:
    """One task as exported: plain JSON types, timestamps in ISO 8601."""
    return {
        "id": task.pk,
        "name": task.name,
        "status": task.status,
        "kind": task.kind,
        "priority": task.priority,
        "uris": list(task.uris),
        "options": dict(task.options or {}),
        "tags": list(task.tags or []),
        "worker": task.worker.name if task.worker else None,
        "epoch": task.epoch,
        "total_length": task.total_length,
        "completed_length": task.completed_length,
        "attempts": task.attempts,
        "error_code": task.error_code,
        "error_class": task.error_class,
        "error_message": task.error_message,
        "result": task.result,
        "created_at": task.created_at.isoformat(),
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }


class Command(BaseCommand):
    help = "Export tasks as JSON or CSV; filters as in GET /api/v1/tasks/."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=("json", "csv"), default="json")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--status", help="Comma-separated statuses.")
        parser.add_argument("--worker", help="Worker id or name.")
        parser.add_argument("--tag")
        parser.add_argument("--kind")
        parser.add_argument("--search", help="Substring of the name or a URI.")

    def handle(self, *args: Any, **options: Any) -> None:
        tasks = task_list(
            status=options["status"],
            worker=options["worker"],
            tag=options["tag"],
            kind=options["kind"],
            search=options["search"],
        ).order_by("pk")
        path = options["output"]
        out: Any
        if path:
            try:
                out = open(path, "w", newline="", encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc}") from exc
        else:
            out = self.stdout
            # Raw output: the wrapper must not add a newline after every write.
            out.ending = ""
        # Progress goes to stderr when the data goes to stdout.
        progress = Progress(self.stdout if path else self.stderr, "exported", tasks.count())
        try:
            rows = self._rows(tasks, progress)
            if options["format"] == "csv":
                self._write_csv(out, rows)
            else:
                self._write_json(out, rows)
        finally:
            if path:
                out.close()
        progress.finish()
        if path:
            self.stdout.write(f"Wrote {progress.done} task(s) to {Path(path)}.")

    def _rows(self, tasks: Any, progress: Progress) -> Iterator[dict[str, Any]]:
        for task in tasks.iterator(chunk_size=1000):
            yield task_row(task)
            progress.advance()

    def _write_json(self, out: Any, rows: Iterator[dict[str, Any]]) -> None:
        # Streamed one task per line inside the array, so memory stays flat.
        out.write("[")
        for index, row in enumerate(rows):
            out.write(("\n" if index == 0 else ",\n") + json.dumps(row))
        out.write("\n]\n")

    def _write_csv(self, out: Any, rows: Iterator[dict[str, Any]]) -> None:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(
                " ".join(row[c]) if c in ("uris", "tags") else ("" if row[c] is None else row[c])
                for c in CSV_COLUMNS
            )
