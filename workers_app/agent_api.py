"""The agent-facing HTTP API (docs/protocol.md). Worker tokens only; user keys are refused."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ariacluster.http import Conflict
from ariacluster.process_metrics import AGENT_REPORTS
from dispatcher import leases
from dispatcher.selectors import worker_assignments
from worker_agent.logcontext import log_context
from workers_app import services
from workers_app.models import Worker

logger = logging.getLogger(__name__)

# What the database columns hold: bigger numbers are a 400, not an overflow (500).
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


def bearer_token(headers: dict[str, str] | Any) -> str | None:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    if value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


class WorkerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Worker, str] | None:
        token = bearer_token(request.headers)
        if token is None:
            return None
        worker = services.worker_for_token(token)
        if worker is None:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked worker token; register again."
            )
        return worker, "worker"

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ariacluster-agent"'


def _worker(request: Request) -> Worker:
    """The authenticated worker (`IsWorker` has already checked what `request.user` is)."""
    return cast(Worker, request.user)


class IsWorker(BasePermission):
    message = "Worker token required (Authorization: Bearer <token> from /register)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Worker)


def in_worker_log_context(func: Any) -> Any:
    """Log everything the view does with the worker's name (and the task id of the URL)."""

    @functools.wraps(func)
    def view(request: Request, *args: Any, **kwargs: Any) -> Any:
        with log_context(worker=_worker(request).name, task_id=kwargs.get("task_id")):
            return func(request, *args, **kwargs)

    return view


def _counted(func: Any) -> Any:
    """Count calls of an agent endpoint in `ariacluster_agent_reports_total{kind}`."""
    counter = AGENT_REPORTS.labels(func.__name__.removeprefix("task_"))

    @functools.wraps(func)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
        counter.inc()
        return func(request, *args, **kwargs)

    return wrapper


def agent_endpoint(request_serializer: type[serializers.Serializer]) -> Any:
    """Stack the decorators every token-authenticated agent endpoint shares."""

    def decorate(func: Any) -> Any:
        func = _counted(func)
        func = in_worker_log_context(func)
        func = permission_classes([IsWorker])(func)
        # User rate limits never apply to agents: a throttled heartbeat would expire leases.
        func = throttle_classes([])(func)
        func = authentication_classes([WorkerTokenAuthentication])(func)
        func = api_view(["POST"])(func)
        return extend_schema(request=request_serializer, responses=OpenApiTypes.OBJECT)(func)

    return decorate


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class CapabilitiesSerializer(serializers.Serializer):
    disk_space = serializers.IntegerField(
        min_value=0, max_value=MAX_INT64, required=False, default=0
    )
    bandwidth = serializers.IntegerField(
        min_value=0, max_value=MAX_INT64, required=False, default=0
    )
    supports_bt = serializers.BooleanField(required=False, default=True)
    supports_metalink = serializers.BooleanField(required=False, default=True)
    tags = serializers.DictField(
        child=serializers.CharField(max_length=64, allow_blank=True), required=False, default=dict
    )


class RegisterSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_.-]{1,100}$")
    hostname = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    pid = serializers.IntegerField(
        min_value=0, max_value=MAX_INT32, required=False, allow_null=True, default=None
    )
    agent_version = serializers.CharField(
        max_length=32, required=False, default="", allow_blank=True
    )
    aria2_version = serializers.CharField(
        max_length=32, required=False, default="", allow_blank=True
    )
    max_tasks = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=5)
    free_disk = serializers.IntegerField(
        min_value=0, max_value=MAX_INT64, required=False, default=0
    )
    capabilities = CapabilitiesSerializer(required=False, default=dict)


class JoinKeyChallenge(BaseAuthentication):
    """Checks nothing itself (`register` does); gives a refused join key its 401 challenge.

    Without an authenticator DRF turns AuthenticationFailed into 403, and the agent treats
    only 401 as "bad credential" (docs/protocol.md).
    """

    def authenticate(self, request: Request) -> None:
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'X-Join-Key realm="ariacluster-agent"'


@extend_schema(request=RegisterSerializer, responses=OpenApiTypes.OBJECT)
@api_view(["POST"])
@authentication_classes([JoinKeyChallenge])
@permission_classes([AllowAny])
@throttle_classes([])
def register(request: Request) -> Response:
    join_key = request.headers.get("X-Join-Key") or bearer_token(request.headers)
    if not join_key or not services.join_key_is_valid(join_key):
        raise exceptions.AuthenticationFailed(
            "A valid cluster join key is required in X-Join-Key (manage.py create_join_key)."
        )
    data = _valid(RegisterSerializer, request.data)
    with log_context(worker=data["name"]):
        registration = services.worker_register(**data)
    from django.conf import settings

    wm = settings.ARIACLUSTER.worker_management
    return Response(
        {
            "worker_id": registration.worker.pk,
            "token": registration.token,
            "heartbeat_interval": wm.heartbeat_interval,
            "heartbeat_timeout": wm.heartbeat_timeout,
            "progress_interval": 1.0,
            # The agent checks every URL against the same policy after resolving its host.
            "url_policy": settings.ARIACLUSTER.security.url_policy.to_dict(),
        }
    )


class HeldTaskSerializer(serializers.Serializer):
    task_id = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    epoch = serializers.IntegerField(min_value=0, max_value=MAX_INT32)


class HeartbeatSerializer(serializers.Serializer):
    slots_used = serializers.IntegerField(min_value=0, max_value=MAX_INT32, default=0)
    download_speed = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    upload_speed = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    free_disk = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    tasks = HeldTaskSerializer(many=True, required=False, default=list)


@agent_endpoint(HeartbeatSerializer)
def heartbeat(request: Request) -> Response:
    data = _valid(HeartbeatSerializer, request.data)
    data.pop("tasks")
    worker = services.worker_heartbeat(worker=_worker(request), **data)
    return Response({"tasks": worker_assignments(worker)})


GID_RE = r"^[0-9a-fA-F]{16}$"


class FileStateSerializer(serializers.Serializer):
    index = serializers.IntegerField(min_value=1, max_value=MAX_INT32)
    path = serializers.CharField(max_length=4096, allow_blank=True)
    size = serializers.IntegerField(min_value=0, max_value=MAX_INT64)
    completed = serializers.IntegerField(min_value=0, max_value=MAX_INT64)
    selected = serializers.BooleanField()


class ProgressItemSerializer(serializers.Serializer):
    task_id = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    epoch = serializers.IntegerField(min_value=0, max_value=MAX_INT32)
    status = serializers.CharField(max_length=16, required=False, default="active")
    total_length = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    completed_length = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    download_speed = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    upload_speed = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    connections = serializers.IntegerField(min_value=0, max_value=MAX_INT32, default=0)
    gid = serializers.RegexField(GID_RE, required=False, default="")
    phase = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
    seeding = serializers.BooleanField(required=False, default=False)
    uploaded_length = serializers.IntegerField(min_value=0, max_value=MAX_INT64, default=0)
    files = serializers.ListField(
        child=FileStateSerializer(), required=False, default=None, max_length=100000
    )


class ProgressSerializer(serializers.Serializer):
    tasks = ProgressItemSerializer(many=True, max_length=10000)  # type: ignore[call-arg]


@agent_endpoint(ProgressSerializer)
def progress(request: Request) -> Response:
    data = _valid(ProgressSerializer, request.data)
    items = [
        leases.ProgressItem(
            **{
                **item,
                "files": None if item["files"] is None else [dict(f) for f in item["files"]],
            }
        )
        for item in data["tasks"]
    ]
    stale = leases.task_report_progress(worker=_worker(request), items=items)
    return Response({"stale": stale})


class EpochSerializer(serializers.Serializer):
    epoch = serializers.IntegerField(min_value=0, max_value=MAX_INT32)


class StartedSerializer(EpochSerializer):
    gid = serializers.RegexField(GID_RE, required=False, default="")


_SAFE_PATH = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\x00-\x1f\x7f]{1,4096}$")


class ResultFileSerializer(serializers.Serializer):
    path = serializers.RegexField(
        _SAFE_PATH,
        error_messages={"invalid": "must be a relative path inside the download dir, without '..'"},
    )
    size = serializers.IntegerField(min_value=0, max_value=MAX_INT64)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")


class CompletedSerializer(EpochSerializer):
    files = ResultFileSerializer(many=True, max_length=100000)  # type: ignore[call-arg]
    seeding = serializers.BooleanField(required=False, default=False)


class FailedSerializer(EpochSerializer):
    error_code = serializers.IntegerField(
        min_value=-MAX_INT32, max_value=MAX_INT32, allow_null=True, required=False, default=None
    )
    error_message = serializers.CharField(
        max_length=4000, allow_blank=True, required=False, default=""
    )


class ReleasedSerializer(EpochSerializer):
    reason = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")


def _task_report(call: Any) -> Response:
    try:
        task = call()
    except leases.UnknownTask as exc:
        raise exceptions.NotFound(str(exc)) from None
    except leases.StaleLease as exc:
        logger.info("report refused: %s", exc)
        raise Conflict(str(exc)) from None
    return Response({"task_id": task.pk, "status": task.status, "epoch": task.epoch})


@agent_endpoint(StartedSerializer)
def task_started(request: Request, task_id: int) -> Response:
    data = _valid(StartedSerializer, request.data)
    return _task_report(
        lambda: leases.task_report_started(
            worker=_worker(request), task_id=task_id, epoch=data["epoch"], gid=data["gid"]
        )
    )


@agent_endpoint(CompletedSerializer)
def task_completed(request: Request, task_id: int) -> Response:
    data = _valid(CompletedSerializer, request.data)
    files = [dict(f) for f in data["files"]]
    return _task_report(
        lambda: leases.task_report_completed(
            worker=_worker(request),
            task_id=task_id,
            epoch=data["epoch"],
            files=files,
            seeding=data["seeding"],
        )
    )


@agent_endpoint(FailedSerializer)
def task_failed(request: Request, task_id: int) -> Response:
    data = _valid(FailedSerializer, request.data)
    return _task_report(
        lambda: leases.task_report_failed(
            worker=_worker(request),
            task_id=task_id,
            epoch=data["epoch"],
            error_code=data["error_code"],
            error_message=data["error_message"],
        )
    )


@agent_endpoint(ReleasedSerializer)
def task_released(request: Request, task_id: int) -> Response:
    data = _valid(ReleasedSerializer, request.data)
    return _task_report(
        lambda: leases.task_report_released(
            worker=_worker(request), task_id=task_id, epoch=data["epoch"], reason=data["reason"]
        )
    )
