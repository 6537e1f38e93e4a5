"""Admin for workers and join keys."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from workers_app import services
from workers_app.models import JoinKey, Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "hostname",
        "status",
        "draining",
        "max_tasks",
        "slots_used",
        "last_heartbeat",
        "free_disk",
        "download_speed",
        "aria2_version",
    ]
    list_filter = ["status", "draining"]
    search_fields = ["name", "hostname"]
    readonly_fields = [
        "name",
        "hostname",
        "status",
        "capabilities",
        "max_tasks",
        "slots_used",
        "last_heartbeat",
        "free_disk",
        "download_speed",
        "upload_speed",
        "aria2_version",
        "agent_version",
        "pid",
        "token_prefix",
        "registered_at",
        "status_changed_at",
        "last_assigned_at",
    ]
    exclude = ["token_hash"]
    actions = ["drain", "undrain"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # workers register themselves

    @admin.action(description="Drain (finish current tasks, take no new ones)")
    def drain(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            services.worker_set_draining(worker=worker, draining=True)
        self.message_user(request, f"Draining {queryset.count()} worker(s).")

    @admin.action(description="Undrain (take new tasks again)")
    def undrain(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            services.worker_set_draining(worker=worker, draining=False)
        self.message_user(request, f"Undrained {queryset.count()} worker(s).")


@admin.register(JoinKey)
class JoinKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "revoked_at"]
    fields = ["name", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at"]

    def save_model(self, request: HttpRequest, obj: JoinKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plaintext = services.join_key_create(name=obj.name)
        obj.pk = key.pk
        self.message_user(
            request,
            f"Join key created — copy it now, it is shown only once: {plaintext}",
            messages.WARNING,
        )
