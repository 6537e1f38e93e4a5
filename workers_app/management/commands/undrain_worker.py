"""Put a drained worker back into rotation."""

from __future__ import annotations

from workers_app.management.commands.drain_worker import Command as DrainCommand


class Command(DrainCommand):
    help = "Undrain a worker (by name or id): it takes new tasks again."
    draining = False
