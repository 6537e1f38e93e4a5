"""`/healthz` and `/readyz`: no auth, no details, 503 when a dependency is down."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client

from ariacluster.localcluster import free_port

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probe_answers_ok_without_any_credentials(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_when_the_channel_layer_cannot_be_reached(
    client: Client, settings: Any
) -> None:
    # A real Redis layer pointed at a port where nothing listens.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_readyz_is_503_without_details_when_the_database_fails(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused to secret-host:5432")

    # A database outage cannot be produced inside the test transaction: inject it.
    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.cursor", broken)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "secret-host" not in response.content.decode()


def test_readyz_refuses_writes(client: Client) -> None:
    assert client.post("/readyz").status_code == 405
