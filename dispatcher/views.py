"""Dashboard pages for tasks: overview, list, detail, add, API keys.

Function views: a normal request gets the whole page, an HTMX request (`request.htmx`) gets the
inline partial of the same template, so page, HTMX swap and live refresh share one rendering.
Every write calls a service; a non-HTMX POST redirects (post/redirect/get).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from dispatcher import selectors, services
from dispatcher.forms import AddDownloadsForm, TaskLimitsForm, parse_file_indexes
from dispatcher.keys import api_key_create, api_key_revoke
from dispatcher.keyset import keyset_page
from dispatcher.models import ApiKey, ApiScope, Priority, Task, TaskKind, TaskStatus
from dispatcher.throughput import cluster_speed, throughput_chart
from workers_app.models import Worker, WorkerStatus

PAGE_SIZE = 50
# A task's file table shows this many rows; bigger torrents are chosen by index ("1,3-5").
MAX_FILE_ROWS = 500
SELECTABLE_KINDS = (TaskKind.TORRENT, TaskKind.MAGNET, TaskKind.METALINK)
# The Add downloads form's "Options" fieldset, in this order.
ADD_OPTION_FIELDS = (
    "priority",
    "tags",
    "split",
    "max_connection_per_server",
    "max_download_limit",
    "checksum",
    "out",
    "header",
    "more_options",
)
MAX_ROWS_PER_REFRESH = 200
TASK_SORTS: dict[str, tuple[str, list[str]]] = {
    "newest": ("Newest first", ["-id"]),
    "oldest": ("Oldest first", ["id"]),
    "priority": ("Priority", ["-priority", "-id"]),
    "name": ("Name", ["name", "id"]),
    "status": ("Status", ["status", "-id"]),
}


class HtmxHttpRequest(HttpRequest):
    """What views receive: HtmxMiddleware adds `htmx` (truthy for HTMX requests)."""

    htmx: HtmxDetails


TASK_ACTIONS: dict[str, Callable[..., Task]] = {
    "pause": services.task_pause,
    "resume": services.task_resume,
    "cancel": services.task_cancel,
    "retry": services.task_retry,
    "requeue": services.task_requeue,
}


def _render_with_messages(request: HtmxHttpRequest, template: str, context: dict[str, Any]) -> str:
    """A fragment plus the messages box swapped out-of-band, for HTMX answers to POSTs."""
    html = render_to_string(template, context, request)
    notes = render_to_string("base.html#messages", {"oob": True}, request)
    return html + notes


def _safe_next(request: HtmxHttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


# Overview -------------------------------------------------------------------------------------


def _overview_context(request: HtmxHttpRequest) -> dict[str, Any]:
    tasks = selectors.tasks_visible_to(request.user)
    workers = selectors.workers_with_load()
    worker_counts = {s.value: 0 for s in WorkerStatus}
    for w in workers:
        worker_counts[w.display_status] += 1  # type: ignore[attr-defined]
    download, upload = cluster_speed()
    return {
        "task_counts": selectors.task_status_counts(tasks),
        "worker_counts": worker_counts,
        "workers": workers,
        "download_speed": download,
        "upload_speed": upload,
        "chart": throughput_chart(),
        "failures": selectors.tasks_recently_failed(tasks),
    }


@require_GET
@login_required
def overview(request: HtmxHttpRequest) -> HttpResponse:
    context = _overview_context(request)
    if request.htmx:
        return render(request, "dispatcher/overview.html#overview-live", context)
    return render(request, "dispatcher/overview.html", context)


# Task list ------------------------------------------------------------------------------------


def _filtered_tasks(request: HtmxHttpRequest, params: QueryDict) -> Any:
    status = params.get("status", "")
    if status and status not in TaskStatus.values:
        status = ""
    qs = selectors.task_list(
        status=status or None,
        worker=params.get("worker") or None,
        tag=params.get("tag") or None,
        kind=params.get("kind") if params.get("kind") in TaskKind.values else None,
        search=(params.get("q") or "").strip() or None,
    )
    visible = selectors.tasks_visible_to(request.user)
    if not getattr(request.user, "is_staff", False):
        qs = qs.filter(owner_id=request.user.pk)
    return qs, visible


def _task_list_context(request: HtmxHttpRequest, params: QueryDict) -> dict[str, Any]:
    sort = params.get("sort") or "newest"
    if sort not in TASK_SORTS:
        sort = "newest"
    qs, visible = _filtered_tasks(request, params)
    page = keyset_page(
        qs,
        ordering=TASK_SORTS[sort][1],
        size=PAGE_SIZE,
        after=params.get("after"),
        before=params.get("before"),
    )
    query = params.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    on_first_page = not params.get("after") and not params.get("before")
    return {
        "page": page,
        "tasks": page.rows,
        "params": params,
        "base_query": query.urlencode(),
        "sort": sort,
        "sorts": [(key, label) for key, (label, _) in TASK_SORTS.items()],
        "statuses": TaskStatus.values,
        "kinds": TaskKind.choices,
        "status_counts": selectors.task_status_counts(visible),
        "worker_names": Worker.objects.order_by("name").values_list("name", flat=True),
        "priorities": Priority.choices,
        # New tasks appear at the top of the default view only; elsewhere rows just update.
        "live_new": on_first_page and sort == "newest",
        "list_url": reverse("task-list") + (f"?{params.urlencode()}" if params else ""),
    }


@require_GET
@login_required
def task_list(request: HtmxHttpRequest) -> HttpResponse:
    context = _task_list_context(request, request.GET)
    if request.htmx:
        return render(request, "dispatcher/task_list.html#task-table", context)
    return render(request, "dispatcher/task_list.html", context)


def _ids(raw: str) -> list[int]:
    ids = [int(part) for part in raw.split(",") if part.strip().isdigit()]
    return ids[:MAX_ROWS_PER_REFRESH]


@require_GET
@login_required
def task_rows(request: HtmxHttpRequest) -> HttpResponse:
    """Just the rows named in `?ids=1,2,3` (for live refresh), rendered by the page's partial."""
    ids = _ids(request.GET.get("ids", ""))
    tasks = (
        selectors.tasks_visible_to(request.user)
        .filter(pk__in=ids)
        .select_related("worker")
        .order_by("-id")
    )
    return render(request, "dispatcher/task_list.html#task-rows", {"tasks": tasks})


@require_POST
@login_required
def task_bulk(request: HtmxHttpRequest) -> HttpResponse:
    """Apply one action to the selected tasks; refusals are reported, the rest still happen."""
    list_url = _safe_next(request, reverse("task-list"))
    action = request.POST.get("action", "")
    ids = [int(v) for v in request.POST.getlist("task") if v.isdigit()][: PAGE_SIZE * 4]
    tasks = list(selectors.tasks_visible_to(request.user).filter(pk__in=ids))
    if action not in (*TASK_ACTIONS, "priority"):
        messages.error(request, "Choose an action.")
    elif not tasks:
        messages.error(request, "Select at least one task.")
    else:
        done, refused = 0, []
        for task in tasks:
            try:
                if action == "priority":
                    services.task_set_priority(task=task, priority=request.POST.get("priority"))
                else:
                    TASK_ACTIONS[action](task=task)
                done += 1
            except services.TaskStateError as exc:
                refused.append(f"#{task.pk}: {exc}")
            except ValidationError as exc:
                refused.append(f"#{task.pk}: {'; '.join(exc.messages)}")
        if done:
            messages.success(request, f"{action.capitalize()}: {done} task(s).")
        if refused:
            messages.warning(request, "Skipped " + "; ".join(refused[:5]))
    if not request.htmx:
        return HttpResponseRedirect(list_url)
    params = QueryDict(urlsplit(list_url).query)
    context = _task_list_context(request, params)
    return HttpResponse(
        _render_with_messages(request, "dispatcher/task_list.html#task-table", context)
    )


# Task detail ----------------------------------------------------------------------------------


def _visible_task(request: HtmxHttpRequest, task_id: int) -> Task:
    return get_object_or_404(
        selectors.tasks_visible_to(request.user).select_related("worker", "owner"), pk=task_id
    )


def _file_rows(task: Task) -> list[dict[str, Any]]:
    """The task's files (as the agent last reported them) with their own progress, and the
    result's SHA-256 where the download is finished; result files alone for older tasks."""
    result = (
        [r for r in task.result if isinstance(r, dict)] if isinstance(task.result, list) else []
    )
    hashes = {str(r.get("path", "")): r.get("sha256") for r in result}
    prefix = f"task-{task.pk}/"
    rows: list[dict[str, Any]] = []
    for entry in (task.files or [])[:MAX_FILE_ROWS]:
        if not isinstance(entry, dict):
            continue
        path = str(entry.get("path", ""))
        size = max(0, int(entry.get("size") or 0))
        done = max(0, int(entry.get("completed") or 0))
        if size > 0:
            percent = round(min(100.0, 100.0 * done / size), 1)
        else:
            percent = 100.0 if task.status == TaskStatus.COMPLETED else 0.0
        rows.append(
            {
                "index": entry.get("index"),
                "path": path,
                "size": size,
                "completed": done,
                "percent": percent,
                "selected": entry.get("selected", True) is not False,
                "sha256": hashes.pop(path, None) or hashes.pop(prefix + path, None),
            }
        )
    if not task.files:
        # Finished before per-file state was kept: the result is the file list.
        for entry in result[:MAX_FILE_ROWS]:
            size = max(0, int(entry.get("size") or 0))
            rows.append(
                {
                    "index": None,
                    "path": str(entry.get("path", "")).removeprefix(prefix),
                    "size": size,
                    "completed": size,
                    "percent": 100.0,
                    "selected": True,
                    "sha256": entry.get("sha256"),
                }
            )
    return rows


def _detail_context(task: Task, limits_form: TaskLimitsForm | None = None) -> dict[str, Any]:
    events = list(task.events.select_related("worker").order_by("-created_at", "-id")[:200])
    file_count = len(task.files or [])
    return {
        "task": task,
        "events": events,
        "files": _file_rows(task),
        "file_count": file_count,
        "files_truncated": file_count > MAX_FILE_ROWS,
        "max_file_rows": MAX_FILE_ROWS,
        "can_select": (task.kind in SELECTABLE_KINDS and not task.is_final and file_count > 0),
        "awaiting_selection": task.pause_for_selection and not task.is_final,
        "limits_form": limits_form or TaskLimitsForm(current=task.options),
        "priorities": Priority.choices,
        "allowed": _allowed_actions(task),
    }


def _allowed_actions(task: Task) -> set[str]:
    status = task.status
    allowed = {"priority"}
    if status in (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.DOWNLOADING):
        allowed.add("pause")
    if status == TaskStatus.PAUSED:
        allowed.add("resume")
    if not task.is_final:
        allowed.add("cancel")
    if status in (TaskStatus.FAILED, TaskStatus.CANCELED) or (
        status == TaskStatus.PENDING and task.not_before
    ):
        allowed.add("retry")
    if status in (TaskStatus.QUEUED, TaskStatus.DOWNLOADING):
        allowed.add("requeue")
    return allowed


@require_GET
@login_required
def task_detail(request: HtmxHttpRequest, task_id: int) -> HttpResponse:
    context = _detail_context(_visible_task(request, task_id))
    if request.htmx:
        return render(request, "dispatcher/task_detail.html#task-detail", context)
    return render(request, "dispatcher/task_detail.html", context)


@require_POST
@login_required
def task_action(request: HtmxHttpRequest, task_id: int, action: str) -> HttpResponse:
    task = _visible_task(request, task_id)
    try:
        if action == "priority":
            task = services.task_set_priority(task=task, priority=request.POST.get("priority"))
        elif action in TASK_ACTIONS:
            task = TASK_ACTIONS[action](task=task)
        else:
            raise Http404("unknown action")
        messages.success(request, f"Task #{task.pk}: {action} done.")
    except services.TaskStateError as exc:
        messages.error(request, f"Task #{task.pk}: {exc}.")
    except ValidationError as exc:
        messages.error(request, f"Task #{task.pk}: {'; '.join(exc.messages)}")
    detail_url = reverse("task-detail", args=[task.pk])
    if not request.htmx:
        return redirect(_safe_next(request, detail_url))
    task = _visible_task(request, task_id)
    return HttpResponse(
        _render_with_messages(
            request, "dispatcher/task_detail.html#task-detail", _detail_context(task)
        )
    )


def _detail_answer(
    request: HtmxHttpRequest, task_id: int, limits_form: TaskLimitsForm | None = None
) -> HttpResponse:
    """After a detail-page POST: HTMX gets the re-rendered detail (and messages), a plain
    form post is redirected back to the page, or shown the page again when a field is wrong."""
    if not request.htmx and limits_form is None:
        return redirect(reverse("task-detail", args=[task_id]))
    context = _detail_context(_visible_task(request, task_id), limits_form)
    if not request.htmx:
        return render(request, "dispatcher/task_detail.html", context, status=400)
    return HttpResponse(
        _render_with_messages(request, "dispatcher/task_detail.html#task-detail", context)
    )


@require_POST
@login_required
def task_files(request: HtmxHttpRequest, task_id: int) -> HttpResponse:
    """Choose the files of a torrent / Metalink (ticked boxes and/or '1,3-5'); starts a
    download that waits for a selection. Same service as POST /api/v1/tasks/{id}/files/."""
    task = _visible_task(request, task_id)
    select = {int(v) for v in request.POST.getlist("select") if v.strip().isdigit()}
    try:
        select.update(parse_file_indexes(request.POST.get("indexes", "")))
        if not select:
            raise ValidationError("Choose at least one file.")
        task = services.task_select_files(task=task, select=sorted(select))
    except services.TaskStateError as exc:
        messages.error(request, f"Task #{task.pk}: {exc}.")
    except ValidationError as exc:
        messages.error(request, f"Task #{task.pk}: {'; '.join(exc.messages)}")
    else:
        messages.success(request, f"Task #{task.pk}: downloading {len(select)} file(s).")
    return _detail_answer(request, task_id)


@require_POST
@login_required
def task_limits(request: HtmxHttpRequest, task_id: int) -> HttpResponse:
    """Change a task's speed limits; the worker applies them live (the API's options service)."""
    task = _visible_task(request, task_id)
    form = TaskLimitsForm(request.POST, current=task.options)
    if not form.is_valid():
        messages.error(request, f"Task #{task.pk}: speed limits not changed, see the fields.")
        return _detail_answer(request, task_id, form)
    changes = form.changes()
    if not changes:
        messages.info(request, f"Task #{task.pk}: speed limits unchanged.")
        return _detail_answer(request, task_id)
    try:
        services.task_change_options(task=task, options=changes)
    except services.TaskStateError as exc:
        messages.error(request, f"Task #{task.pk}: {exc}.")
    except ValidationError as exc:
        messages.error(request, f"Task #{task.pk}: {'; '.join(exc.messages)}")
    else:
        messages.success(request, f"Task #{task.pk}: speed limits set.")
    return _detail_answer(request, task_id)


# Add downloads --------------------------------------------------------------------------------


@login_required
def task_add(request: HtmxHttpRequest) -> HttpResponse:
    """GET shows the form; POST creates every line as a task, or nothing when anything is wrong."""
    form = AddDownloadsForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            tasks = services.task_create_batch(items=form.cleaned_data["items"], owner=request.user)
        except services.InvalidBatch as exc:
            for index, problems in exc.errors.items():
                form.add_error(None, f"line {int(index) + 1}: {problems}")
        except services.QueueFull as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Added {len(tasks)} download(s).")
            if request.htmx:
                # A whole new page: let htmx navigate instead of swapping it into the form.
                return HttpResponseClientRedirect(reverse("task-list"))
            return redirect("task-list")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "option_fields": ADD_OPTION_FIELDS}
    if request.htmx:
        return render(request, "dispatcher/task_add.html#add-form", context, status=status)
    return render(request, "dispatcher/task_add.html", context, status=status)


# API keys -------------------------------------------------------------------------------------


@login_required
def api_keys(request: HtmxHttpRequest) -> HttpResponse:
    """The user's own keys; POST creates one and shows its secret (and webhook secret) once."""
    created: str | None = None
    created_key: ApiKey | None = None
    errors: list[str] = []
    scopes = [s for s in ApiScope.values if request.user.is_staff or s != ApiScope.ADMIN]
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        scope = request.POST.get("scope", ApiScope.WRITE)
        if not name or len(name) > 100:
            errors.append("Give the key a name of at most 100 characters.")
        if scope not in scopes:
            errors.append(f"Scope must be one of {', '.join(scopes)}.")
        if not errors:
            try:
                created_key, created = api_key_create(
                    name=name,
                    scope=scope,
                    user=request.user,
                    webhook_url=request.POST.get("webhook_url", "").strip(),
                )
            except ValidationError as exc:
                errors += [f"Webhook URL: {m}" for m in exc.message_dict["webhook_url"]]
    keys = ApiKey.objects.filter(user_id=int(request.user.pk or 0)).order_by("-created_at")
    context = {
        "keys": keys,
        "created": created,
        "created_key": created_key,
        "errors": errors,
        "scopes": scopes,
    }
    return render(request, "dispatcher/api_keys.html", context, status=400 if errors else 200)


@require_POST
@login_required
def api_key_revoke_view(request: HtmxHttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, user_id=int(request.user.pk or 0))
    api_key_revoke(key=key)
    messages.success(request, f"Key {key.prefix}… revoked.")
    return redirect("api-keys")
