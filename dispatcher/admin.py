"""Admin for tasks, their events and API keys; actions call the same services as the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dispatcher import services
from dispatcher.models import ApiKey, Task, TaskEvent


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "worker_name", "epoch", "message")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _bulk(action: Callable[..., Task], label: str) -> Any:
    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        done, refused = 0, []
        for task in queryset:
            try:
                action(task=task)
                done += 1
            except services.TaskStateError as exc:
                refused.append(f"#{task.pk}: {exc}")
        if done:
            modeladmin.message_user(request, f"{label}: {done} task(s).", messages.SUCCESS)
        if refused:
            modeladmin.message_user(
                request, "Refused — " + "; ".join(refused[:20]), messages.WARNING
            )

    run.short_description = f"{label} selected tasks"  # type: ignore[attr-defined]
    run.__name__ = f"action_{label.lower()}"
    return run


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "status",
        "priority",
        "worker",
        "epoch",
        "attempts",
        "progress_percent",
        "created_at",
    ]
    list_filter = ["status", "kind", "priority", "worker"]
    search_fields = ["name", "uris"]
    list_select_related = ["worker"]
    readonly_fields = [
        "status",
        "worker",
        "epoch",
        "attempts",
        "not_before",
        "gid",
        "pending_reason",
        "total_length",
        "completed_length",
        "download_speed",
        "upload_speed",
        "connections",
        "error_code",
        "error_class",
        "error_message",
        "result",
        "files",
        "phase",
        "seeding",
        "uploaded_length",
        "pause_for_selection",
        "avoid_workers",
        "created_at",
        "assigned_at",
        "started_at",
        "finished_at",
        "owner",
    ]
    fields = ["name", "kind", "uris", "options", "priority", "tags", *readonly_fields]
    inlines = [TaskEventInline]
    actions = [
        _bulk(services.task_cancel, "Cancel"),
        _bulk(services.task_retry, "Retry"),
        _bulk(services.task_requeue, "Requeue"),
        _bulk(services.task_pause, "Pause"),
        _bulk(services.task_resume, "Resume"),
    ]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # New tasks go through task_create (validation, placement): use the API or dashboard.
        return False


@admin.register(TaskEvent)
class TaskEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "task", "kind", "worker_name", "epoch", "message"]
    list_filter = ["kind"]
    search_fields = ["message", "worker_name"]
    readonly_fields = ["task", "kind", "worker", "worker_name", "epoch", "message", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "scope",
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["scope"]
    search_fields = ["name", "prefix"]
    fields = [
        "name",
        "scope",
        "user",
        "expires_at",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        from dispatcher.keys import api_key_create

        key, plaintext = api_key_create(
            name=obj.name, scope=obj.scope, user=obj.user, expires_at=obj.expires_at
        )
        obj.pk = key.pk
        self.message_user(
            request,
            f"API key created — copy it now, it is shown only once: {plaintext}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        from dispatcher.keys import api_key_revoke

        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
