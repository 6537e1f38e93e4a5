"""Run the webhook sender from several processes against one real database.

Used by ``tests/test_webhook_senders.py``; configured only by the environment (``DATABASE_URL``,
``ARIACLUSTER_CONFIG`` naming the receiver, ``ARIACLUSTER_WEBHOOK_SECRET``). Each mode prints
one JSON line on stdout:

* ``setup --deliveries N``: migrate, then queue N deliveries to every configured URL;
* ``run --deadline S``: call `webhook_deliver_due` until nothing is due (or S seconds pass);
* ``check``: deliveries by (status, attempts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ariacluster.settings")
    os.environ.setdefault("ARIACLUSTER_MAINTENANCE", "0")
    import django

    django.setup()


def setup(deliveries: int) -> dict[str, Any]:
    from django.conf import settings
    from django.core.management import call_command

    from dispatcher.models import Task, TaskStatus, WebhookDelivery

    call_command("migrate", verbosity=0)
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    rows = [
        WebhookDelivery(event="task.completed", task=task, url=url, payload={"i": i})
        for i in range(deliveries)
        for url in settings.ARIACLUSTER.webhooks.urls
    ]
    WebhookDelivery.objects.bulk_create(rows)
    return {"queued": len(rows)}


def run(deadline: float) -> dict[str, Any]:
    from dispatcher.webhooks import webhook_deliver_due

    stop_at = time.monotonic() + deadline
    attempted = passes = 0
    while time.monotonic() < stop_at:
        sent = webhook_deliver_due(limit=10)
        if not sent:
            break
        attempted += sent
        passes += 1
    return {"attempted": attempted, "passes": passes}


def check() -> dict[str, Any]:
    from dispatcher.models import WebhookDelivery

    rows = Counter(
        f"{status}/{attempts}"
        for status, attempts in WebhookDelivery.objects.values_list("status", "attempts")
    )
    return {"by_status_attempts": dict(rows)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("setup").add_argument("--deliveries", type=int, default=100)
    sub.add_parser("run").add_argument("--deadline", type=float, default=60)
    sub.add_parser("check")
    args = parser.parse_args(argv)
    _setup_django()
    if args.mode == "setup":
        result = setup(args.deliveries)
    elif args.mode == "run":
        result = run(args.deadline)
    else:
        result = check()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
