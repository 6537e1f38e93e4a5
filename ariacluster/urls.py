"""URL map: admin, user API (v1 and the original paths), agent API, schema and docs."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import ariacluster.schema  # noqa: F401 - registers the OpenAPI authentication extensions
from ariacluster.health import healthz
from dispatcher.api import views as task_api
from workers_app import agent_api
from workers_app import api as worker_api

drain = worker_api.worker_drain

v1 = [
    path("api/v1/status/", task_api.cluster_status, name="api-status"),
    path("api/v1/tasks/", task_api.task_collection, name="api-tasks"),
    path("api/v1/tasks/batch/", task_api.task_batch, name="api-tasks-batch"),
    path("api/v1/tasks/<int:task_id>/", task_api.task_detail, name="api-task"),
    path("api/v1/tasks/<int:task_id>/events/", task_api.task_events, name="api-task-events"),
    re_path(
        r"^api/v1/tasks/(?P<task_id>\d+)/(?P<action>cancel|pause|resume|retry|priority)/$",
        task_api.task_action,
        name="api-task-action",
    ),
    path("api/v1/workers/", worker_api.worker_collection, name="api-workers"),
    path("api/v1/workers/<int:worker_id>/", worker_api.worker_detail, name="api-worker"),
    re_path(
        r"^api/v1/workers/(?P<worker_id>\d+)/(?P<action>drain|undrain)/$",
        drain,
        name="api-worker-drain",
    ),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# The original system's paths and shapes, kept working verbatim (no trailing slash).
legacy = [
    path("api/status", task_api.cluster_status),
    path("api/tasks", task_api.task_collection),
    path("api/tasks/<int:task_id>", task_api.task_detail),
    path("api/workers", worker_api.worker_collection),
    path("api/workers/<int:worker_id>", worker_api.worker_detail),
]

agent = [
    path("api/agent/v1/register", agent_api.register, name="agent-register"),
    path("api/agent/v1/heartbeat", agent_api.heartbeat, name="agent-heartbeat"),
    path("api/agent/v1/progress", agent_api.progress, name="agent-progress"),
    path("api/agent/v1/tasks/<int:task_id>/started", agent_api.task_started),
    path("api/agent/v1/tasks/<int:task_id>/completed", agent_api.task_completed),
    path("api/agent/v1/tasks/<int:task_id>/failed", agent_api.task_failed),
    path("api/agent/v1/tasks/<int:task_id>/released", agent_api.task_released),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    *v1,
    *legacy,
    *agent,
]
