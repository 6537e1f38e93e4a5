"""Delete old finished tasks: `purge_tasks --older-than 30d --status completed,failed,canceled`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dispatcher.management.progress import Progress
from dispatcher.models import FINAL_STATUSES
from dispatcher.services import task_purge

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``, or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


class Command(BaseCommand):
    help = "Delete finished tasks (and their history) that finished longer ago than --older-than."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", required=True, help="Age, e.g. 30d, 12h, 90m.")
        parser.add_argument(
            "--status",
            default=",".join(FINAL_STATUSES),
            help="Comma-separated final statuses (default: completed,failed,canceled).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_duration(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        statuses = [s.strip() for s in options["status"].split(",") if s.strip()]
        cutoff = timezone.now() - age
        try:
            total = task_purge(statuses=statuses, older_than=cutoff, dry_run=True)
            if options["dry_run"]:
                self.stdout.write(f"{total} task(s) would be deleted.")
                return
            progress = Progress(self.stdout, "deleted", total)
            deleted = task_purge(statuses=statuses, older_than=cutoff, on_progress=progress.update)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        progress.finish()
        self.stdout.write(f"Deleted {deleted} task(s) finished before {cutoff:%Y-%m-%d %H:%M}.")
