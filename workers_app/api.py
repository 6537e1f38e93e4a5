"""User REST API for workers: list, detail, drain/undrain, remove."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from ariacluster.http import Conflict
from dispatcher.api.serializers import WorkerOutputSerializer
from dispatcher.models import LEASED_STATUSES
from dispatcher.selectors import worker_slots_used
from workers_app import services
from workers_app.models import Worker


def _worker_out(worker: Worker) -> Response:
    context = {"slots_used": worker_slots_used([worker.pk])}
    data = dict(WorkerOutputSerializer(worker, context=context).data)
    data["tasks"] = list(
        worker.tasks.filter(status__in=LEASED_STATUSES).order_by("pk").values_list("pk", flat=True)
    )
    return Response(data)


@extend_schema(responses=WorkerOutputSerializer(many=True))
@api_view(["GET"])
def worker_collection(request: Request) -> Response:
    workers = list(Worker.objects.all())
    context = {"slots_used": worker_slots_used([w.pk for w in workers])}
    return Response(WorkerOutputSerializer(workers, many=True, context=context).data)


@extend_schema(responses=WorkerOutputSerializer)
@api_view(["GET", "DELETE"])
def worker_detail(request: Request, worker_id: int) -> Response:
    """Read a worker; DELETE removes it (offline and holding no task only)."""
    worker = get_object_or_404(Worker, pk=worker_id)
    if request.method == "DELETE":
        try:
            services.worker_remove(worker=worker)
        except services.WorkerStateError as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
    return _worker_out(worker)


@extend_schema(request=None, responses=WorkerOutputSerializer)
@api_view(["POST"])
def worker_drain(request: Request, worker_id: int, action: str) -> Response:
    """POST /workers/{id}/drain/ or /undrain/: stop or restart giving it new tasks."""
    worker = get_object_or_404(Worker, pk=worker_id)
    services.worker_set_draining(worker=worker, draining=action == "drain")
    return _worker_out(worker)
