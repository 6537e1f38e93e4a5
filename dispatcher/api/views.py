"""User REST API for tasks and cluster status (`/api/v1/...` and the original `/api/...`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from ariacluster.auth import ApiCredential
from ariacluster.http import Conflict, Pagination, PayloadTooLarge
from dispatcher import selectors, services
from dispatcher.api.serializers import (
    BatchInputSerializer,
    FileSelectionSerializer,
    OptionsChangeSerializer,
    PrioritySerializer,
    TaskEventSerializer,
    TaskInputSerializer,
    TaskOutputSerializer,
    TaskPageSerializer,
)
from dispatcher.idempotency import idempotent
from dispatcher.models import Task, TaskKind, TaskStatus
from dispatcher.validation import TASK_FIELDS, UploadTooLarge
from worker_agent.logcontext import with_task_log_context

MAX_BATCH = 1000
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
UPLOAD_FIELDS = ("torrent", "metalink")


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["expected a JSON object"]})
    return dict(request.data)


def _form_body(request: Request) -> dict[str, Any]:
    """A multipart/form create: files `torrent`/`metalink`, repeated `uris`, JSON `options`."""
    limit = settings.ARIACLUSTER.security.max_upload_bytes
    form: QueryDict = request.data  # type: ignore[assignment]
    body: dict[str, Any] = {}
    for key in form:
        if key in UPLOAD_FIELDS:
            continue
        values = form.getlist(key)
        body[key] = values if key == "uris" else values[-1]
    if isinstance(body.get("options"), str):
        try:
            body["options"] = json.loads(body["options"]) if body["options"].strip() else None
        except json.JSONDecodeError:
            raise exceptions.ValidationError(
                {"options": ["must be a JSON object in a form field"]}
            ) from None
    for key in UPLOAD_FIELDS:
        upload = request.FILES.get(key)
        if upload is None:
            continue
        if upload.size is not None and upload.size > limit:
            raise PayloadTooLarge(
                f"'{key}' is {upload.size} bytes; the limit is {limit} (security.max_upload_bytes)"
            )
        body[key] = upload.read()
    return body


def _key_id(request: Request) -> int | None:
    """The stored API key the request came with (None for sessions and config keys)."""
    return request.auth.key_id if isinstance(request.auth, ApiCredential) else None


def _task_out(task: Task, code: int = status.HTTP_200_OK) -> Response:
    return Response(TaskOutputSerializer(task).data, status=code)


def _create_one(request: Request) -> Response:
    is_form = request.content_type.startswith(("multipart/", "application/x-www-form"))
    body = _form_body(request) if is_form else _body(request)
    unknown = set(body) - TASK_FIELDS
    if unknown:
        raise exceptions.ValidationError({field: ["unknown field"] for field in sorted(unknown)})
    try:
        task = services.task_create(owner=request.user, api_key_id=_key_id(request), **body)
    except UploadTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    return _task_out(task, status.HTTP_201_CREATED)


FILTERS = [
    OpenApiParameter("status", str, description="One status or several, comma-separated."),
    OpenApiParameter("worker", str, description="Worker id or name."),
    OpenApiParameter("tag", str),
    OpenApiParameter("kind", str, enum=[k.value for k in TaskKind]),
    OpenApiParameter("search", str, description="Substring of the name or a URI."),
    OpenApiParameter("sha256", str, description="Tasks with a result file of this sha256."),
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int),
]


@extend_schema(
    methods=["GET"], operation_id="v1_tasks_list", parameters=FILTERS, responses=TaskPageSerializer
)
@extend_schema(methods=["POST"], request=TaskInputSerializer, responses={201: TaskOutputSerializer})
@api_view(["GET", "POST"])
def task_collection(request: Request) -> Response:
    """List tasks (filtered, paginated) or create one download."""
    if request.method == "POST":
        return idempotent(request, lambda: _create_one(request))
    params = request.query_params
    wanted = params.get("status")
    if wanted:
        bad = [s for s in wanted.split(",") if s.strip() and s.strip() not in TaskStatus.values]
        if bad:
            raise exceptions.ValidationError(
                {"status": [f"unknown status {bad[0]!r}; use one of {TaskStatus.values}"]}
            )
    digest = params.get("sha256")
    if digest and not _SHA256.match(digest):
        raise exceptions.ValidationError({"sha256": ["must be 64 hex digits"]})
    tasks = selectors.task_list(
        base=selectors.tasks_visible_to(request.user),
        sha256=digest,
        status=wanted,
        worker=params.get("worker"),
        tag=params.get("tag"),
        kind=params.get("kind"),
        search=params.get("search"),
    )
    paginator = Pagination()
    page = paginator.paginate_queryset(tasks, request)
    return paginator.get_paginated_response(TaskOutputSerializer(page, many=True).data)


@extend_schema(request=BatchInputSerializer, responses={201: TaskOutputSerializer(many=True)})
@api_view(["POST"])
def task_batch(request: Request) -> Response:
    """Create many downloads at once; if any item is invalid, none is created."""
    return idempotent(request, lambda: _create_batch(request))


def _create_batch(request: Request) -> Response:
    body = _body(request)
    items = body.get("tasks")
    if not isinstance(items, list) or not items:
        raise exceptions.ValidationError({"tasks": ["must be a non-empty list of tasks"]})
    if len(items) > MAX_BATCH:
        raise exceptions.ValidationError({"tasks": [f"at most {MAX_BATCH} tasks per batch"]})
    try:
        tasks = services.task_create_batch(
            items=items, owner=request.user, api_key_id=_key_id(request)
        )
    except services.InvalidBatch as exc:
        raise exceptions.ValidationError({"tasks": exc.errors}) from None
    except UploadTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    return Response(
        {"tasks": TaskOutputSerializer(tasks, many=True).data}, status=status.HTTP_201_CREATED
    )


def _visible_task(request: Request, task_id: int) -> Task:
    """The task if this caller may see it; 404 (not 403) for another user's task."""
    return get_object_or_404(
        selectors.tasks_visible_to(request.user).select_related("worker"), pk=task_id
    )


def _act_task(call: Callable[[], Task]) -> Task:
    try:
        return call()
    except services.TaskStateError as exc:
        raise Conflict(str(exc)) from None
    except DjangoValidationError as exc:
        raise exceptions.ValidationError(exc.message_dict) from None


def _act(call: Callable[[], Task]) -> Response:
    return _task_out(_act_task(call))


@extend_schema(methods=["PATCH"], request=PrioritySerializer, responses=TaskOutputSerializer)
@extend_schema(methods=["GET", "DELETE"], responses=TaskOutputSerializer)
@api_view(["GET", "DELETE", "PATCH"])
@with_task_log_context
def task_detail(request: Request, task_id: int) -> Response:
    """Read a task; DELETE cancels it (the original's semantics); PATCH changes priority
    and/or options (see `task_options`)."""
    task = _visible_task(request, task_id)
    if request.method == "DELETE":
        return _act(lambda: services.task_cancel(task=task))
    if request.method == "PATCH":
        body = _body(request)
        if not body or set(body) - {"priority", "options"}:
            raise exceptions.ValidationError(
                {"non_field_errors": ["PATCH takes 'priority' and/or 'options'"]}
            )
        if "options" in body:
            task = _act_task(
                lambda: services.task_change_options(task=task, options=body["options"])
            )
        if "priority" in body:
            task = _act_task(
                lambda: services.task_set_priority(task=task, priority=body["priority"])
            )
        return _task_out(task)
    return _task_out(task)


@extend_schema(request=OptionsChangeSerializer, responses=TaskOutputSerializer)
@api_view(["POST"])
@with_task_log_context
def task_options(request: Request, task_id: int) -> Response:
    """Change options of an unfinished task: speed limits apply live, anything else restarts
    the download on the same worker keeping its data. A null value removes an option."""
    task = _visible_task(request, task_id)
    options = _body(request).get("options")
    return _act(lambda: services.task_change_options(task=task, options=options))


@extend_schema(methods=["POST"], request=FileSelectionSerializer, responses=TaskOutputSerializer)
@extend_schema(methods=["GET"], responses={200: dict})
@api_view(["GET", "POST"])
@with_task_log_context
def task_files(request: Request, task_id: int) -> Response:
    """GET the file list; POST ``{"select": [1, 3]}`` chooses files (aria2 `select-file`)
    and starts a download that waits for a selection."""
    task = _visible_task(request, task_id)
    if request.method == "POST":
        select = _body(request).get("select")
        return _act(lambda: services.task_select_files(task=task, select=select))
    return Response(
        {"files": task.files, "phase": task.phase, "pause_for_selection": task.pause_for_selection}
    )


ACTIONS: dict[str, Callable[..., Task]] = {
    "cancel": services.task_cancel,
    "pause": services.task_pause,
    "resume": services.task_resume,
    "retry": services.task_retry,
}


@extend_schema(operation_id="v1_tasks_action", request=None, responses=TaskOutputSerializer)
@api_view(["POST"])
@with_task_log_context
def task_action(request: Request, task_id: int, action: str) -> Response:
    """POST /tasks/{id}/{cancel|pause|resume|retry}/ — 409 when the status forbids it."""
    task = _visible_task(request, task_id)
    if action == "priority":
        priority = _body(request).get("priority")
        return _act(lambda: services.task_set_priority(task=task, priority=priority))
    return _act(lambda: ACTIONS[action](task=task))


@extend_schema(responses=TaskEventSerializer(many=True))
@api_view(["GET"])
@with_task_log_context
def task_events(request: Request, task_id: int) -> Response:
    task = _visible_task(request, task_id)
    return Response(TaskEventSerializer(task.events.all(), many=True).data)


@extend_schema(responses={200: dict})
@api_view(["GET"])
def cluster_status(request: Request) -> Response:
    """Counts per task and worker status, cluster speed, queue length."""
    return Response(selectors.cluster_status())
