"""Output shapes of the user API. Task keeps the original system's fields, plus ours."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from dispatcher.models import Priority, Task, TaskEvent
from dispatcher.selectors import worker_display_status
from workers_app.models import Worker


class TaskOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    worker_id = serializers.IntegerField(read_only=True, allow_null=True)
    worker = serializers.SerializerMethodField()
    priority_name = serializers.SerializerMethodField()
    progress = serializers.FloatField(source="progress_percent", read_only=True)
    eta = serializers.IntegerField(source="eta_seconds", read_only=True, allow_null=True)
    result = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "url",
            "uris",
            "name",
            "kind",
            "status",
            "priority",
            "priority_name",
            "tags",
            "worker_id",
            "worker",
            "epoch",
            "attempts",
            "options",
            "progress",
            "total_length",
            "completed_length",
            "download_speed",
            "upload_speed",
            "connections",
            "eta",
            "pending_reason",
            "not_before",
            "error_code",
            "error_class",
            "error_message",
            "result",
            "files",
            "phase",
            "seeding",
            "uploaded_length",
            "pause_for_selection",
            "gid",
            "created_at",
            "updated_at",
            "assigned_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, task: Task) -> str:
        return task.uris[0] if task.uris else ""

    def get_worker(self, task: Task) -> str | None:
        return task.worker.name if task.worker_id and task.worker else None

    def get_priority_name(self, task: Task) -> str:
        return str(Priority(task.priority).label)

    def get_result(self, task: Task) -> dict[str, Any] | None:
        if not task.result:
            return None
        return {"files": task.result, "worker": self.get_worker(task)}


class TaskPageSerializer(serializers.Serializer):
    """One page of the task list (schema only): `page` / `page_size` pick it."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TaskOutputSerializer(many=True)


class TaskEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskEvent
        fields = ["kind", "worker_id", "worker_name", "epoch", "message", "created_at"]
        read_only_fields = fields


class TaskInputSerializer(serializers.Serializer):
    """Documents the create body for the schema; validation lives in dispatcher.validation."""

    url = serializers.CharField(required=False, help_text="One URL or magnet link.")
    uris = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Several mirrors of one file."
    )
    options = serializers.DictField(required=False, help_text="Allowlisted aria2 options.")
    priority = serializers.CharField(required=False, help_text="1-4 or low/normal/high/urgent.")
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    name = serializers.CharField(required=False)
    torrent = serializers.CharField(
        required=False, help_text="A .torrent file, base64 (or a multipart file field)."
    )
    metalink = serializers.CharField(
        required=False, help_text="A Metalink v3/v4 document, base64 (or a multipart file field)."
    )
    pause_for_selection = serializers.BooleanField(
        required=False, help_text="Stop once the file list is known, until POST .../files/."
    )


class OptionsChangeSerializer(serializers.Serializer):
    options = serializers.DictField(help_text="Allowlisted aria2 options; null removes one.")


class FileSelectionSerializer(serializers.Serializer):
    select = serializers.ListField(child=serializers.IntegerField(min_value=1))


class BatchInputSerializer(serializers.Serializer):
    tasks = TaskInputSerializer(many=True)


class PrioritySerializer(serializers.Serializer):
    priority = serializers.CharField()


class WorkerOutputSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    slots_used = serializers.SerializerMethodField()

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "hostname",
            "status",
            "max_tasks",
            "slots_used",
            "capabilities",
            "last_heartbeat",
            "free_disk",
            "download_speed",
            "upload_speed",
            "aria2_version",
            "agent_version",
            "pid",
            "draining",
            "registered_at",
        ]
        read_only_fields = fields

    def _used(self, worker: Worker) -> int:
        counts: dict[int, int] = self.context.get("slots_used", {})
        return counts.get(worker.pk, 0)

    def get_status(self, worker: Worker) -> str:
        return worker_display_status(worker, self._used(worker))

    def get_slots_used(self, worker: Worker) -> int:
        return self._used(worker)
