"""`Idempotency-Key` on task creation: one task per key and request, replayed answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dispatcher.idempotency import idempotency_purge_expired
from dispatcher.keys import api_key_create
from dispatcher.models import IdempotencyRecord, Task

pytestmark = pytest.mark.django_db

BODY = {"url": "http://example.com/once.iso"}


def _post(client: APIClient, key: str | None, body: dict, path: str = "/api/tasks") -> object:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **headers)


def test_repeating_a_create_with_the_same_key_returns_the_same_task(
    api_client: APIClient,
) -> None:
    first = _post(api_client, "order-17", BODY)
    again = _post(api_client, "order-17", BODY)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Task.objects.count() == 1


def test_the_same_key_with_a_different_request_is_refused(api_client: APIClient) -> None:
    assert _post(api_client, "k1", BODY).status_code == 201
    other = _post(api_client, "k1", {"url": "http://example.com/other.iso"})
    assert other.status_code == 409
    assert "different request" in other.json()["error"]
    assert Task.objects.count() == 1


def test_without_a_key_each_create_makes_a_new_task(api_client: APIClient) -> None:
    _post(api_client, None, BODY)
    _post(api_client, None, BODY)
    assert Task.objects.count() == 2


def test_a_rejected_request_stores_nothing_so_the_key_can_be_reused(
    api_client: APIClient,
) -> None:
    bad = _post(api_client, "k2", {"url": "file:///etc/passwd"})
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert _post(api_client, "k2", BODY).status_code == 201


def test_keys_are_scoped_to_the_caller(api_client: APIClient) -> None:
    _, other_key = api_key_create(name="someone else", scope="write")
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=other_key)
    a = _post(api_client, "shared-name", BODY)
    b = _post(other, "shared-name", BODY)
    assert a.json()["id"] != b.json()["id"]


def test_batch_creates_are_idempotent_too(api_client: APIClient) -> None:
    body = {"tasks": [{"url": "http://example.com/1"}, {"url": "http://example.com/2"}]}
    first = _post(api_client, "batch-1", body, "/api/v1/tasks/batch/")
    again = _post(api_client, "batch-1", body, "/api/v1/tasks/batch/")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Task.objects.count() == 2


def test_a_malformed_key_is_a_clear_400(api_client: APIClient) -> None:
    response = _post(api_client, "has space", BODY)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert not Task.objects.exists()


def test_answers_are_forgotten_after_a_day(api_client: APIClient) -> None:
    _post(api_client, "old", BODY)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_purge_expired() == 1
    assert _post(api_client, "old", BODY).status_code == 201
    assert Task.objects.count() == 2
