"""URL map: admin, user API (v1 and the original paths), agent API, schema and docs."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import ariacluster.schema  # noqa: F401 - registers the OpenAPI authentication extensions
from ariacluster.health import healthz, readyz
from ariacluster.metrics import metrics
from dispatcher import views as dashboard
from dispatcher.api import views as task_api
from workers_app import agent_api
from workers_app import api as worker_api
from workers_app import views as worker_pages

drain = worker_api.worker_drain

v1 = [
    path("api/v1/status/", task_api.cluster_status, name="api-status"),
    path("api/v1/tasks/", task_api.task_collection, name="api-tasks"),
    path("api/v1/tasks/batch/", task_api.task_batch, name="api-tasks-batch"),
    path("api/v1/tasks/<int:task_id>/", task_api.task_detail, name="api-task"),
    path("api/v1/tasks/<int:task_id>/events/", task_api.task_events, name="api-task-events"),
    path("api/v1/tasks/<int:task_id>/options/", task_api.task_options, name="api-task-options"),
    path("api/v1/tasks/<int:task_id>/files/", task_api.task_files, name="api-task-files"),
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
    path(
        "api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"
    ),
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

# The HTMX dashboard (session login).
pages = [
    path("", dashboard.overview, name="overview"),
    path("tasks/", dashboard.task_list, name="task-list"),
    path("tasks/rows/", dashboard.task_rows, name="task-rows"),
    path("tasks/bulk/", dashboard.task_bulk, name="task-bulk"),
    path("tasks/add/", dashboard.task_add, name="task-add"),
    path("tasks/<int:task_id>/", dashboard.task_detail, name="task-detail"),
    re_path(
        r"^tasks/(?P<task_id>\d+)/(?P<action>pause|resume|cancel|retry|requeue|priority)/$",
        dashboard.task_action,
        name="task-action",
    ),
    path("tasks/<int:task_id>/files/", dashboard.task_files, name="task-files"),
    path("tasks/<int:task_id>/limits/", dashboard.task_limits, name="task-limits"),
    path("workers/", worker_pages.worker_list, name="worker-list"),
    path("workers/rows/", worker_pages.worker_rows, name="worker-rows"),
    re_path(
        r"^workers/(?P<worker_id>\d+)/(?P<action>drain|undrain|remove)/$",
        worker_pages.worker_action,
        name="worker-action",
    ),
    path("keys/", dashboard.api_keys, name="api-keys"),
    path("keys/<int:key_id>/revoke/", dashboard.api_key_revoke_view, name="api-key-revoke"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    *pages,
    *v1,
    *legacy,
    *agent,
]
