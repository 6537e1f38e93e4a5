"""Admin for tasks, their events, API keys and webhook deliveries; actions call the same
services as the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from dispatcher import services
from dispatcher.models import ApiKey, Task, TaskEvent, WebhookDelivery
from dispatcher.redaction import webhook_display_url
from dispatcher.webhooks import webhook_retry_now, webhook_url_check


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


class ApiKeyForm(forms.ModelForm):
    """The webhook URL is write-only: its user info is a credential, so the page shows it
    masked (`ApiKeyAdmin.webhook`) and takes a new one in `new_webhook_url`, never pre-filled."""

    new_webhook_url = forms.CharField(
        label="Webhook URL",
        required=False,
        max_length=2048,
        help_text="Told when this key's tasks complete or fail (optional).",
        widget=forms.TextInput(attrs={"size": 80, "autocomplete": "off"}),
    )
    remove_webhook = forms.BooleanField(label="Remove the webhook", required=False)

    class Meta:
        model = ApiKey
        fields = ["name", "scope", "user", "expires_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "new_webhook_url" in self.fields:
            field = self.fields["new_webhook_url"]
            field.label = "New webhook URL"
            field.help_text = (
                "Empty keeps the current one. A URL on another host gets a new signing secret, "
                "shown once."
            )

    def clean_new_webhook_url(self) -> str:
        url = (self.cleaned_data.get("new_webhook_url") or "").strip()
        if not url:
            return ""
        try:
            return webhook_url_check(url)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["webhook_url"]) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("remove_webhook") and data.get("new_webhook_url"):
            raise ValidationError("Give a new webhook URL or remove the webhook, not both.")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "prefix",
        "scope",
        "user",
        "webhook",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["scope"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["webhook", "prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke", "rotate_webhook_secret"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        key = ("name", "scope", "user", "expires_at")
        if obj is None:
            return (*key, "new_webhook_url")
        # The URL as it is shown (masked), then the write-only ways to change it.
        hook = ("webhook", "new_webhook_url", "remove_webhook")
        return (*key, *hook, "prefix", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="webhook")
    def webhook(self, key: ApiKey) -> str:
        return webhook_display_url(key.webhook_url) if key.webhook_url else "—"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        from dispatcher.keys import api_key_create, api_key_set_webhook

        url = form.cleaned_data.get("new_webhook_url", "")
        if change:
            # Only the form's own fields: the webhook goes through api_key_set_webhook.
            obj.save(update_fields=["name", "scope", "user", "expires_at"])
            if url or form.cleaned_data.get("remove_webhook"):
                secret = api_key_set_webhook(key=obj, url=url)
                if secret:
                    self._show_once(request, "Webhook signing secret", secret)
            return
        key, plaintext = api_key_create(
            name=obj.name,
            scope=obj.scope,
            user=obj.user,
            expires_at=obj.expires_at,
            webhook_url=url,
        )
        obj.pk = key.pk
        self._show_once(request, "API key created", plaintext)
        if key.webhook_secret:
            self._show_once(request, "Webhook signing secret", key.webhook_secret)

    def _show_once(self, request: HttpRequest, what: str, secret: str) -> None:
        self.message_user(
            request, f"{what} — copy it now, it is shown only once: {secret}", messages.WARNING
        )

    @admin.action(description="Rotate the webhook secret of selected keys")
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        from dispatcher.keys import api_key_rotate_webhook_secret

        for key in queryset.exclude(webhook_url=""):
            secret = api_key_rotate_webhook_secret(key=key)
            self._show_once(request, f"New webhook secret of {key.prefix}", secret)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        from dispatcher.keys import api_key_revoke

        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, with "retry now"; never shows secrets or URL user info."""

    list_display = [
        "id",
        "created_at",
        "event",
        "task_link",
        "status",
        "target",
        "attempts",
        "last_status_code",
        "short_error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "event", "per_key"]
    # Not `url`: searching it would reveal its user info (a credential) a guess at a time.
    search_fields = ["=uuid", "=task__id"]
    list_select_related = ["task"]
    ordering = ["-created_at", "-id"]
    fields = (
        "uuid",
        "event",
        "task_link",
        "target",
        "per_key",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
        "payload",
    )
    readonly_fields = fields
    actions = ["retry_now"]
    show_full_result_count = False

    @admin.display(description="task", ordering="task_id")
    def task_link(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:dispatcher_task_change", args=[delivery.task_id])
        return format_html('<a href="{}">#{}</a>', url, delivery.task_id)

    @admin.display(description="URL")
    def target(self, delivery: WebhookDelivery) -> str:
        return webhook_display_url(delivery.url)

    @admin.display(description="last error")
    def short_error(self, delivery: WebhookDelivery) -> str:
        text = delivery.last_error
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.action(description="Retry now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        changed = webhook_retry_now(deliveries=queryset)
        skipped = queryset.count() - changed
        self.message_user(request, f"{changed} delivery(ies) will be sent on the next pass.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} skipped: already delivered, or being sent right now.",
                messages.WARNING,
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
