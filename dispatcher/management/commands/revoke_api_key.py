"""Revoke a user API key by its prefix (the part `list_api_keys` shows)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dispatcher.keys import api_key_revoke
from dispatcher.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by prefix; it stops working on its next request."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("prefix", help="The key's prefix (ack_<prefix>_...), or the whole key.")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["prefix"].strip()
        # Accept the whole key too, so an operator can paste what leaked.
        parts = given.split("_")
        prefix = parts[1] if len(parts) >= 3 and parts[0] == "ack" else given
        key = ApiKey.objects.filter(prefix=prefix).first()
        if key is None:
            raise CommandError(f"no API key with prefix {prefix!r} (see manage.py list_api_keys)")
        if key.revoked_at is not None:
            self.stdout.write(f"API key '{key.name}' ({key.prefix}) was already revoked.")
            return
        api_key_revoke(key=key)
        self.stdout.write(f"Revoked API key '{key.name}' ({key.prefix}).")
