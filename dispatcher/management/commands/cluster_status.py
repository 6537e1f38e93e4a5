"""Print the cluster's state: tasks per status, workers, speed, slots (`--json` for scripts)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from dispatcher.selectors import cluster_status


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class Command(BaseCommand):
    help = "Show the cluster's status (the same numbers as GET /api/status)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print /api/status's JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        status = cluster_status()
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        tasks = ", ".join(f"{n} {name}" for name, n in status["tasks"].items() if n)
        workers = ", ".join(f"{n} {name}" for name, n in status["workers"].items() if n)
        slots = status["slots"]
        lines = [
            f"Tasks:   {status['total_tasks']} ({tasks or 'none'})",
            f"Queue:   {status['queue_length']} pending",
            f"Workers: {status['total_workers']} ({workers or 'none'})",
            f"Slots:   {slots['used']} of {slots['total']} in use",
            f"Speed:   {human_bytes(status['download_speed'])}/s down, "
            f"{human_bytes(status['upload_speed'])}/s up",
        ]
        self.stdout.write("\n".join(lines))
