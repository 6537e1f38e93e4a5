"""The API keys page: create (shown once), list by prefix, revoke; each user sees their own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dispatcher.keys import api_key_create
from dispatcher.models import ApiKey
from dispatcher.tests.dashboard_fixtures import member, member_client, staff, staff_client

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def test_a_created_key_is_shown_once_and_works(member_client: Client, member: User) -> None:
    response = member_client.post("/keys/", {"name": "script", "scope": "read"})
    plaintext = response.context["created"]
    assert plaintext.startswith("ack_")
    assert plaintext in response.content.decode()
    key = ApiKey.objects.get()
    assert (key.user_id, key.scope, key.name) == (member.pk, "read", "script")
    later = member_client.get("/keys/").content.decode()
    assert plaintext not in later
    assert f"ack_{key.prefix}_" in later
    api = Client().get("/api/v1/tasks/", HTTP_X_API_KEY=plaintext)
    assert api.status_code == 200


def test_members_cannot_create_admin_keys(member_client: Client) -> None:
    response = member_client.post("/keys/", {"name": "x", "scope": "admin"})
    assert response.status_code == 400
    assert ApiKey.objects.count() == 0


def test_a_key_needs_a_name(staff_client: Client) -> None:
    assert staff_client.post("/keys/", {"name": " ", "scope": "write"}).status_code == 400


def test_revoking_a_key_stops_it_working(member_client: Client, member: User) -> None:
    key, plaintext = api_key_create(name="k", user=member)
    response = member_client.post(f"/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert Client().get("/api/v1/tasks/", HTTP_X_API_KEY=plaintext).status_code == 401


def test_users_see_and_revoke_only_their_own_keys(member_client: Client, staff: User) -> None:
    key, _ = api_key_create(name="staff-key", user=staff)
    assert "staff-key" not in member_client.get("/keys/").content.decode()
    assert member_client.post(f"/keys/{key.pk}/revoke/").status_code == 404
