"""Create a cluster join key (what agents register with) and print it once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workers_app.services import join_key_create


class Command(BaseCommand):
    help = "Create a join key for worker agents (config/worker.json dispatcher.api_key)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", default="workers")
        parser.add_argument("--quiet", action="store_true", help="Print only the key.")

    def handle(self, *args: Any, **options: Any) -> None:
        key, plaintext = join_key_create(name=options["name"])
        if options["quiet"]:
            self.stdout.write(plaintext)
            return
        self.stdout.write(f"Join key '{key.name}' (prefix {key.prefix}):")
        self.stdout.write(plaintext)
        self.stdout.write(
            "Put it in config/worker.json as dispatcher.api_key (or "
            "ARIACLUSTER_JOIN_KEY). It is shown only once."
        )
