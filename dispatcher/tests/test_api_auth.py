"""Who may call the user API: API keys (header or ?api_key=), scopes, config keys, size limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher.keys import api_key_create, api_key_revoke
from dispatcher.models import ApiKey, Task
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

BODY = {"url": "http://example.com/file.iso"}


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def test_a_request_without_a_key_answers_401_with_a_challenge(anonymous_client: APIClient) -> None:
    response = anonymous_client.get("/api/v1/tasks/")

    assert response.status_code == 401
    assert "X-API-Key" in response["WWW-Authenticate"]
    assert set(response.json()) == {"error", "detail"}


def test_a_post_without_a_key_answers_401_and_creates_nothing(
    anonymous_client: APIClient,
) -> None:
    response = anonymous_client.post("/api/tasks", BODY, format="json")

    assert response.status_code == 401
    assert Task.objects.count() == 0


@pytest.mark.parametrize("key", ["nonsense", "ack_deadbeef_wrongwrongwrong", "ack_short_x", ""])
def test_a_bad_key_answers_401(key: str, write_key: str) -> None:
    response = client_with(key).get("/api/v1/tasks/")

    assert response.status_code == 401


def test_a_key_with_a_known_prefix_but_wrong_secret_answers_401(write_key: str) -> None:
    tag, prefix, _ = write_key.split("_", 2)

    response = client_with(f"{tag}_{prefix}_{'x' * 43}").get("/api/v1/tasks/")

    assert response.status_code == 401


def test_the_key_may_be_given_as_the_api_key_query_parameter(write_key: str) -> None:
    response = APIClient().post(f"/api/tasks?api_key={write_key}", BODY, format="json")

    assert response.status_code == 201


def test_using_a_key_records_when_it_was_last_used(api_client: APIClient) -> None:
    api_client.get("/api/v1/tasks/")

    assert ApiKey.objects.get().last_used_at is not None


def test_a_read_scope_key_can_read_but_not_write() -> None:
    _, key = api_key_create(name="reader", scope="read")
    client = client_with(key)

    assert client.get("/api/v1/tasks/").status_code == 200
    response = client.post("/api/v1/tasks/", BODY, format="json")

    assert response.status_code == 403
    assert "read" in response.json()["error"]
    assert Task.objects.count() == 0


def test_a_revoked_key_is_refused() -> None:
    key_row, key = api_key_create(name="old")
    api_key_revoke(key=key_row)

    response = client_with(key).get("/api/v1/tasks/")

    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_an_expired_key_is_refused() -> None:
    _, key = api_key_create(name="old", expires_at=timezone.now() - timedelta(seconds=1))

    assert client_with(key).get("/api/v1/tasks/").status_code == 401


def test_a_key_that_has_not_expired_yet_is_accepted() -> None:
    _, key = api_key_create(name="new", expires_at=timezone.now() + timedelta(days=1))

    assert client_with(key).get("/api/v1/tasks/").status_code == 200


def test_a_key_listed_in_the_config_file_is_accepted(configure: Callable[..., None]) -> None:
    configure(security={"api_keys": ("original-plain-key",)})

    response = client_with("original-plain-key").post("/api/tasks", BODY, format="json")

    assert response.status_code == 201
    assert client_with("another-plain-key").get("/api/tasks").status_code == 401


def test_without_api_key_required_anonymous_callers_may_read_and_write(
    configure: Callable[..., None], anonymous_client: APIClient
) -> None:
    configure(security={"api_key_required": False})

    assert anonymous_client.get("/api/tasks").status_code == 200
    assert anonymous_client.post("/api/tasks", BODY, format="json").status_code == 201


def test_without_api_key_required_a_bad_key_is_still_refused(
    configure: Callable[..., None],
) -> None:
    configure(security={"api_key_required": False})

    assert client_with("nonsense").get("/api/tasks").status_code == 401


def test_a_worker_token_is_refused_on_user_endpoints(registration: Registration) -> None:
    as_api_key = client_with(registration.token).get("/api/v1/tasks/")
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {registration.token}")
    as_bearer = bearer.get("/api/v1/tasks/")

    assert as_api_key.status_code == 401
    assert "Worker credentials" in as_api_key.json()["error"]
    assert as_bearer.status_code == 401


def test_a_join_key_is_refused_on_user_endpoints(join_key: str) -> None:
    assert client_with(join_key).get("/api/v1/tasks/").status_code == 401


def test_a_body_over_max_request_bytes_answers_413_and_creates_nothing(
    configure: Callable[..., None], api_client: APIClient
) -> None:
    configure(security={"max_request_bytes": 1024})
    body = {"url": "http://example.com/file.iso", "name": "x" * 2000}

    response = api_client.post("/api/tasks", body, format="json")

    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert Task.objects.count() == 0


def test_a_body_under_max_request_bytes_is_accepted(
    configure: Callable[..., None], api_client: APIClient
) -> None:
    configure(security={"max_request_bytes": 1024})

    assert api_client.post("/api/tasks", BODY, format="json").status_code == 201
