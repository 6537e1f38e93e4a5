"""Shared fixtures for the dispatcher tests: real API keys, registered workers, config."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher.keys import api_key_create
from workers_app.models import Worker, WorkerStatus
from workers_app.services import Registration, join_key_create, worker_register


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Give the SQLite test database a real file (WAL, one writer) instead of shared memory.

    Shared-cache memory databases lock per table and fail at once with "database table is
    locked" instead of waiting, which would hide or fake the locking behaviour that the
    concurrency tests check. A temp file also keeps parallel test runs apart.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and "mode=memory" not in str(database["NAME"]):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.db")
    elif "postgresql" in database["ENGINE"] and not database.get("TEST", {}).get("NAME"):
        # Two runs sharing ``test_test`` would drop each other's database: one per process.
        database.setdefault("TEST", {})["NAME"] = f"test_{database['NAME']}_{os.getpid()}"


def replace_config(settings: Any, **sections: dict[str, Any]) -> None:
    """Override sections of the frozen `settings.ARIACLUSTER`, e.g. ``security={...}``."""
    config = settings.ARIACLUSTER
    changes = {
        name: dataclasses.replace(getattr(config, name), **values)
        for name, values in sections.items()
    }
    settings.ARIACLUSTER = dataclasses.replace(config, **changes)


@pytest.fixture
def configure(settings: Any) -> Callable[..., None]:
    """``configure(task_assignment={"strategy": "random"})`` for the test's duration."""

    def apply(**sections: dict[str, Any]) -> None:
        replace_config(settings, **sections)

    return apply


@pytest.fixture
def no_startup_grace(settings: Any) -> None:
    """Let lease expiry act at once instead of waiting one timeout after process start."""
    settings.ARIACLUSTER_NO_STARTUP_GRACE = True


@pytest.fixture
def write_key(db: None) -> str:
    _, plaintext = api_key_create(name="tests", scope="write")
    return plaintext


@pytest.fixture
def api_client(write_key: str) -> APIClient:
    """A DRF client sending a real write-scope API key in X-API-Key."""
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=write_key)
    return client


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


def set_heartbeat(worker: Worker, *, at: datetime | None = None) -> Worker:
    """Mark the worker online with a heartbeat at `at` (default now), as a heartbeat would."""
    at = at or timezone.now()
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat=at, status=WorkerStatus.ONLINE)
    worker.refresh_from_db()
    return worker


@pytest.fixture
def make_live(db: None) -> Callable[..., Worker]:
    """``make_live(worker, at=...)``: give the worker a heartbeat at `at` (default now)."""
    return set_heartbeat


@pytest.fixture
def register_worker(db: None) -> Callable[..., Registration]:
    """Register a worker through the real service; returns its row and plaintext token."""

    def register(
        name: str = "worker1",
        *,
        max_tasks: int = 5,
        capabilities: dict[str, Any] | None = None,
        free_disk: int = 0,
    ) -> Registration:
        return worker_register(
            name=name,
            hostname=f"{name}.local",
            pid=1234,
            agent_version="0.1.0",
            aria2_version="1.37.0",
            max_tasks=max_tasks,
            free_disk=free_disk,
            capabilities=capabilities or {},
        )

    return register


@pytest.fixture
def registration(register_worker: Callable[..., Registration]) -> Registration:
    return register_worker("worker1")


@pytest.fixture
def agent_client(registration: Registration) -> APIClient:
    """A client authenticated as `registration`'s worker (Authorization: Bearer <token>)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {registration.token}")
    return client


@pytest.fixture
def join_key(db: None) -> str:
    _, plaintext = join_key_create(name="tests")
    return plaintext
