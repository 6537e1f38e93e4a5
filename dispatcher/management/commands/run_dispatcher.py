"""`run_dispatcher`: the name the deployment docs and containers use for `serve`."""

from __future__ import annotations

from dispatcher.management.commands.serve import Command as ServeCommand


class Command(ServeCommand):
    help = ServeCommand.help + " (Same as `manage.py serve`.)"
