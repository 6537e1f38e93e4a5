"""`GET /metrics`: Prometheus text format, computed from the database at scrape time.

The cluster's figures come from the database through `dispatcher.selectors`, so any dispatcher
process answers the same numbers however many run. Placement timings are events of one process and
come from `ariacluster.process_metrics` (per process: scrape each dispatcher). Access needs an
API key with `admin` scope (or a staff session), or ``Authorization: Bearer <token>`` equal to
the ``ARIACLUSTER_METRICS_TOKEN`` environment variable when that is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rest_framework import exceptions
from rest_framework.request import Request

from ariacluster.auth import ApiCredential, ApiKeyAuthentication
from ariacluster.http import error_body
from ariacluster.process_metrics import PROCESS_COLLECTORS
from dispatcher.models import ErrorClass
from dispatcher.selectors import cluster_status, task_totals
from dispatcher.webhooks import webhook_delivery_counts


class ClusterCollector(Collector):
    """Reads the cluster's state from the database on every scrape."""

    def collect(self) -> Iterator[Metric]:
        status = cluster_status()
        totals = task_totals()

        tasks = GaugeMetricFamily("ariacluster_tasks", "Tasks by status.", labels=["status"])
        for name, n in status["tasks"].items():
            tasks.add_metric([name], n)
        yield tasks
        yield GaugeMetricFamily(
            "ariacluster_queue_length", "Tasks waiting to be placed.", value=status["queue_length"]
        )
        oldest = totals["oldest_pending_at"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "ariacluster_oldest_pending_task_age_seconds",
            "Age of the oldest pending task (0 when none waits).",
            value=max(0.0, age),
        )
        workers = GaugeMetricFamily(
            "ariacluster_workers", "Workers by status (busy: every slot used).", labels=["status"]
        )
        for name, n in status["workers"].items():
            workers.add_metric([name], n)
        yield workers
        yield GaugeMetricFamily(
            "ariacluster_slots_used", "Download slots in use.", value=status["slots"]["used"]
        )
        yield GaugeMetricFamily(
            "ariacluster_slots_total",
            "Download slots of online workers.",
            value=status["slots"]["total"],
        )
        yield GaugeMetricFamily(
            "ariacluster_download_speed_bytes",
            "Cluster download speed in bytes per second.",
            value=status["download_speed"],
        )
        yield GaugeMetricFamily(
            "ariacluster_upload_speed_bytes",
            "Cluster upload speed in bytes per second.",
            value=status["upload_speed"],
        )
        yield GaugeMetricFamily(
            "ariacluster_downloaded_bytes",
            "Bytes of completed tasks still in the database (drops when tasks are purged).",
            value=totals["downloaded_bytes"],
        )
        yield CounterMetricFamily(
            "ariacluster_task_retries",
            "Retries recorded in task histories (automatic and requested).",
            value=totals["retries"],
        )
        failed = GaugeMetricFamily(
            "ariacluster_failed_tasks",
            "Failed tasks by error class (transient, permanent, worker_local, none).",
            labels=["error_class"],
        )
        for error_class in ErrorClass:
            label = error_class.value or "none"
            failed.add_metric([label], totals["failed_by_class"].get(error_class.value, 0))
        yield failed
        hooks = GaugeMetricFamily(
            "ariacluster_webhook_deliveries",
            "Webhook deliveries by status (pending, delivered, failed: gave up).",
            labels=["status"],
        )
        for name, n in webhook_delivery_counts().items():
            hooks.add_metric([name], n)
        yield hooks


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ClusterCollector())
for _collector in PROCESS_COLLECTORS:
    REGISTRY.register(_collector)


def metrics_allowed(request: HttpRequest) -> bool:
    """An admin-scope API key, a staff session, or the configured metrics bearer token."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
    try:
        found = ApiKeyAuthentication().authenticate(Request(request))
    except exceptions.AuthenticationFailed:
        return False
    if found is not None:
        _, credential = found
        return isinstance(credential, ApiCredential) and credential.scope == "admin"
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            error_body(
                "Metrics need an API key with admin scope (X-API-Key) or the metrics "
                "token (Authorization: Bearer ...)."
            ),
            status=401,
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
