"""List user API keys: prefix, name, scope, owner, state and last use (never the key)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from dispatcher.models import ApiKey


def key_state(key: ApiKey, now: Any) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if not key.is_usable(now):
        return "expired"
    return "active"


class Command(BaseCommand):
    help = "List API keys (prefix, name, scope, owner, state, last use)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--all", action="store_true", help="Include revoked and expired keys.")
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        keys = ApiKey.objects.select_related("user").order_by("created_at", "id")
        rows = [
            {
                "prefix": k.prefix,
                "name": k.name,
                "scope": k.scope,
                "user": k.user.get_username() if k.user else "",
                "state": key_state(k, now),
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            }
            for k in keys
        ]
        if not options["all"]:
            rows = [r for r in rows if r["state"] == "active"]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No API keys. Create one with manage.py create_api_key.")
            return
        header = f"{'PREFIX':<10} {'SCOPE':<6} {'STATE':<8} {'LAST USED':<20} {'USER':<12} NAME"
        self.stdout.write(header)
        for r in rows:
            used = (r["last_used_at"] or "never")[:19]
            self.stdout.write(
                f"{r['prefix']:<10} {r['scope']:<6} {r['state']:<8} {used:<20} "
                f"{r['user'] or '-':<12} {r['name']}"
            )
