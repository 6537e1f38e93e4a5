"""Create a user API key and print it once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from dispatcher.keys import api_key_create
from dispatcher.models import ApiScope


class Command(BaseCommand):
    help = "Create an API key (stored hashed; printed only this once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument("--scope", choices=ApiScope.values, default=ApiScope.WRITE)
        parser.add_argument("--user", help="Username that owns the key (optional).")
        parser.add_argument("--expires-days", type=int, help="Expire after N days.")
        parser.add_argument(
            "--webhook-url",
            default="",
            help="Notify this URL when tasks created with the key complete or fail (signed "
            "with a secret printed once below).",
        )
        parser.add_argument(
            "--quiet", action="store_true", help="Print only the key (and webhook secret)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
        expires = None
        if options["expires_days"] is not None:
            if options["expires_days"] <= 0:
                raise CommandError("--expires-days must be positive")
            expires = timezone.now() + timedelta(days=options["expires_days"])
        try:
            key, plaintext = api_key_create(
                name=options["name"],
                scope=options["scope"],
                user=user,
                expires_at=expires,
                webhook_url=options["webhook_url"],
            )
        except ValidationError as exc:
            problems = "; ".join(m for ms in exc.message_dict.values() for m in ms)
            raise CommandError(f"--webhook-url: {problems}") from None
        if options["quiet"]:
            self.stdout.write(plaintext)
            if key.webhook_secret:
                self.stdout.write(key.webhook_secret)
            return
        self.stdout.write(f"API key '{key.name}' (scope {key.scope}, prefix {key.prefix}):")
        self.stdout.write(plaintext)
        self.stdout.write("Store it now: it is kept only as a hash and cannot be shown again.")
        if key.webhook_secret:
            self.stdout.write(f"Webhook signing secret for {key.webhook_url}:")
            self.stdout.write(key.webhook_secret)
            self.stdout.write(
                "Give it to the receiver to check X-Ariacluster-Signature; it is not shown again."
            )
