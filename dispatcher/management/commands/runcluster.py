"""`make run`: a dispatcher and two local workers, ready to download, in one command."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ariacluster.localcluster import LocalCluster, write_private
from dispatcher.keys import api_key_create
from workers_app.services import join_key_create


class Command(BaseCommand):
    help = (
        "Run the dispatcher plus local worker agents (downloads/worker1, downloads/worker2). "
        "The first run creates an admin login, an API key and a join key."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workers", type=int, default=2, help="Local agents to start.")
        parser.add_argument("--max-tasks", type=int, default=5, help="Slots per local agent.")

    def _credentials(self, path: Path) -> dict[str, str]:
        """Read the local credentials, creating admin login, API key and join key once."""
        if path.exists():
            return dict(json.loads(path.read_text()))
        user_model = get_user_model()
        password = secrets.token_urlsafe(12)
        if user_model.objects.filter(username="admin").exists():
            raise CommandError(
                f"user 'admin' exists but {path} is missing; create an API key "
                "with manage.py create_api_key and remove the user or the file"
            )
        admin = user_model.objects.create_superuser("admin", "", password)
        _, api_key = api_key_create(name="make run", scope="admin", user=admin)
        _, join_key = join_key_create(name="local workers")
        credentials = {
            "admin_user": "admin",
            "admin_password": password,
            "api_key": api_key,
            "join_key": join_key,
        }
        write_private(path, json.dumps(credentials, indent=2) + "\n")
        self.first_run = True
        return credentials

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.ARIACLUSTER
        if config.database.type == "memory":
            raise CommandError(
                "runcluster starts separate processes; an in-memory database "
                "cannot be shared. Use sqlite (the default) or postgresql."
            )
        call_command("migrate", verbosity=0, interactive=False)
        self.first_run = False
        data_dir = Path(settings.DATA_DIR)
        credentials = self._credentials(data_dir / "local-credentials.json")
        root = Path(settings.BASE_DIR)
        cluster = LocalCluster(
            data_dir=data_dir,
            download_root=root / "downloads",
            host="127.0.0.1",
            port=config.port,
            existing_config=Path(config.source) if config.source else None,
        )
        self.stdout.write(f"Starting the dispatcher on {cluster.url} ...")
        cluster.start_dispatcher()
        for index in range(1, options["workers"] + 1):
            name = f"worker{index}"
            path = cluster.write_agent_config(
                name, credentials["join_key"], max_tasks=options["max_tasks"]
            )
            cluster.start_agent(name, path)
        self._banner(cluster, credentials, options["workers"])
        try:
            while True:
                time.sleep(1)
                dead = [n for n, p in cluster.agents.items() if p.poll() is not None]
                dead += ["dispatcher" for p in cluster.dispatchers if p.poll() is not None]
                if dead:
                    raise CommandError(f"{', '.join(dead)} stopped; see the log above")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping ...")
        finally:
            cluster.stop()

    def _banner(self, cluster: LocalCluster, credentials: dict[str, str], workers: int) -> None:
        key = credentials["api_key"]
        lines = [
            "",
            "ariacluster is running (Ctrl-C stops everything).",
            f"  Dashboard: {cluster.url}/   (log in with the login below)",
            f"  API:       {cluster.url}/api/v1/   docs: {cluster.url}/api/v1/docs/",
            f"  Admin:     {cluster.url}/admin/",
            f"  Workers:   {workers} local agents downloading into downloads/worker1..",
        ]
        if self.first_run:
            lines += [
                f"  Login:     admin / {credentials['admin_password']}",
                f"  API key:   {key}",
                "  (kept, readable by you only, in data/local-credentials.json)",
            ]
        else:
            lines.append("  Login and API key: data/local-credentials.json")
        lines += [
            "",
            "Try (KEY is the API key above):",
            f"  KEY={key}"
            if self.first_run
            else "  KEY=$(python3 -c 'import json; print(json."
            'load(open("data/local-credentials.json"))["api_key"])\')',
            f'  curl -H "X-API-Key: $KEY" {cluster.url}/api/status',
            f"  curl -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' "
            f'-d \'{{"url": "https://example.com/file.iso"}}\' {cluster.url}/api/tasks',
            "",
        ]
        self.stdout.write("\n".join(lines))
