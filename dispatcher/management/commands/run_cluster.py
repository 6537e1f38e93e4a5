"""`run_cluster`: the issue's name for `runcluster` (what `make run` starts)."""

from __future__ import annotations

from dispatcher.management.commands.runcluster import Command as RunClusterCommand


class Command(RunClusterCommand):
    help = RunClusterCommand.help + " (Same as `manage.py runcluster`.)"
