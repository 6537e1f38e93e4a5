"""Run the dispatcher: Daphne (HTTP + websockets) on the configured host and port."""

from __future__ import annotations

import logging
from typing import Any

from daphne.access import AccessLogGenerator
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

logger = logging.getLogger("ariacluster")
access_logger = logging.getLogger("ariacluster.access")


class AccessLog(AccessLogGenerator):  # type: ignore[misc]
    """Daphne's access log sent through `logging`: redacted (`?api_key=` and other secrets, by
    `worker_agent.logs.RedactingFilter`), rotated and JSON-formatted like every other line."""

    def __init__(self) -> None:
        super().__init__(stream=None)

    def write_entry(
        self,
        host: Any,
        date: Any,
        request: str,
        status: Any = None,
        length: Any = None,
        ident: Any = None,
        user: Any = None,
    ) -> None:
        client = host[0] if isinstance(host, list | tuple) and host else host
        access_logger.info('%s "%s" %s %s', client, request, status or "-", length or "-")


class Command(BaseCommand):
    help = "Serve the dispatcher (HTTP API, admin, dashboard, agent websockets) with Daphne."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=None, help="Listen address (config: host).")
        parser.add_argument("--port", type=int, default=None, help="Port (config: port).")
        parser.add_argument("--no-access-log", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        config = settings.ARIACLUSTER
        host = options["host"] or config.host
        port = options["port"] or config.port
        if config.database.type == "memory":
            logger.warning(
                "database.type is 'memory': every task is lost when this process "
                "stops. Use sqlite or postgresql to keep them."
            )
            call_command("migrate", verbosity=0, interactive=False)
        if not config.security.api_key_required:
            logger.warning("=" * 70)
            logger.warning(
                "security.api_key_required is false: ANYONE who can reach %s:%s "
                "can read and change every task.",
                host,
                port,
            )
            logger.warning("=" * 70)
        if host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("listening on %s: reachable from other machines", host)

        from ariacluster.asgi import application

        access_log = None if options["no_access_log"] else AccessLog()
        logger.info(
            "dispatcher listening on http://%s:%s/ (config: %s)",
            host,
            port,
            config.source or "defaults",
        )
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            action_logger=access_log,
            ping_interval=20,
            ping_timeout=30,
            application_close_timeout=5,
        ).run()
