"""Queue downloads from a file in aria2's input-file format; all or nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dispatcher.input_file import InputFileError, parse_input_file
from dispatcher.services import InvalidBatch, task_create_batch


def _messages(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in detail.items())
    return " ".join(map(str, detail))


class Command(BaseCommand):
    help = (
        "Queue the downloads listed in FILE (aria2 input-file format: URIs of one file on a "
        "line, indented option=value lines below). Every entry is validated first; if any is "
        "invalid nothing is queued and each problem is shown with its line number."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="Path, or - for standard input.")
        parser.add_argument("--priority", help="low, normal, high, urgent (or 1-4) for all.")
        parser.add_argument("--tag", action="append", dest="tags", help="Tag every task.")
        parser.add_argument("--user", help="Username that owns the tasks.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only.")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["file"]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {source}: {exc}") from exc
        try:
            entries = parse_input_file(text)
        except InputFileError as exc:
            for line, message in exc.errors:
                self.stderr.write(f"{source}:{line}: {message}")
            raise CommandError(f"{len(exc.errors)} malformed line(s); nothing queued") from exc
        if not entries:
            raise CommandError(f"{source}: no URIs found")
        owner = None
        if options["user"]:
            owner = get_user_model().objects.filter(username=options["user"]).first()
            if owner is None:
                raise CommandError(f"no user named {options['user']!r}")
        items = []
        for entry in entries:
            item = entry.as_item()
            if options["priority"]:
                item["priority"] = options["priority"]
            if options["tags"]:
                item["tags"] = options["tags"]
            items.append(item)
        self.stdout.write(f"Read {len(items)} download(s) from {source}; validating ...")
        try:
            if options["dry_run"]:
                _validate_only(items)
            else:
                tasks = task_create_batch(items=items, owner=owner)
        except InvalidBatch as exc:
            for index, detail in sorted(exc.errors.items(), key=lambda kv: int(kv[0])):
                line = entries[int(index)].line
                self.stderr.write(f"{source}:{line}: {_messages(detail)}")
            raise CommandError(f"{len(exc.errors)} invalid download(s); nothing queued") from exc
        if options["dry_run"]:
            self.stdout.write(f"All {len(items)} download(s) are valid (dry run: none queued).")
            return
        first, last = tasks[0].pk, tasks[-1].pk
        self.stdout.write(f"Queued {len(tasks)} download(s): tasks #{first}..#{last}.")


def _validate_only(items: list[dict[str, Any]]) -> None:
    """Run the batch's validation without creating anything (raises `InvalidBatch`)."""
    try:
        with transaction.atomic():
            task_create_batch(items=items)
            # Undo the inserts (and their after-commit placement): the same path, no copy.
            raise _DryRun
    except _DryRun:
        pass


class _DryRun(Exception):
    """Raised to roll back a dry run's batch."""
