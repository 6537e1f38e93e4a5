"""Dashboard page for workers: list with load and versions; drain, undrain, remove (staff)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from dispatcher.selectors import workers_with_load
from dispatcher.views import HtmxHttpRequest
from workers_app import services
from workers_app.models import Worker


@require_GET
@login_required
def worker_list(request: HtmxHttpRequest) -> HttpResponse:
    context = {"workers": workers_with_load()}
    if request.htmx:
        return render(request, "workers_app/worker_list.html#worker-table", context)
    return render(request, "workers_app/worker_list.html", context)


@require_GET
@login_required
def worker_rows(request: HtmxHttpRequest) -> HttpResponse:
    """Just the rows named in `?ids=1,2` (for live refresh), rendered by the page's partial."""
    ids = [int(p) for p in request.GET.get("ids", "").split(",") if p.strip().isdigit()][:200]
    context = {"workers": workers_with_load(ids)}
    return render(request, "workers_app/worker_list.html#worker-rows", context)


@require_POST
@login_required
def worker_action(request: HtmxHttpRequest, worker_id: int, action: str) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can change workers.")
    worker = get_object_or_404(Worker, pk=worker_id)
    if action in ("drain", "undrain"):
        services.worker_set_draining(worker=worker, draining=action == "drain")
        messages.success(request, f"Worker {worker.name}: {action} done.")
    elif action == "remove":
        try:
            services.worker_remove(worker=worker)
            messages.success(request, f"Worker {worker.name} removed.")
        except services.WorkerStateError as exc:
            messages.error(request, str(exc))
    else:
        raise Http404("unknown action")
    if not request.htmx:
        return redirect("worker-list")
    html = render_to_string(
        "workers_app/worker_list.html#worker-table", {"workers": workers_with_load()}, request
    )
    html += render_to_string("base.html#messages", {"oob": True}, request)
    return HttpResponse(html)
