"""`list_api_keys` and `revoke_api_key`: keys are listed without secrets and revoked by prefix."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from dispatcher.keys import api_key_create, api_key_revoke
from dispatcher.tests.commands import run_command

pytestmark = pytest.mark.django_db


def test_list_api_keys_shows_prefix_scope_and_state_but_never_the_key() -> None:
    key, plaintext = api_key_create(name="ci", scope="read")

    output = run_command("list_api_keys").stdout

    assert key.prefix in output
    assert "ci" in output
    assert "read" in output
    assert "active" in output
    assert plaintext not in output


def test_list_api_keys_hides_revoked_keys_unless_all_is_given() -> None:
    key, _ = api_key_create(name="old")
    api_key_revoke(key=key)

    assert key.prefix not in run_command("list_api_keys").stdout
    rows = json.loads(run_command("list_api_keys", "--all", "--json").stdout)
    assert [(r["prefix"], r["state"]) for r in rows] == [(key.prefix, "revoked")]


def test_revoked_key_is_refused_by_the_api_on_its_next_request() -> None:
    key, plaintext = api_key_create(name="leaked")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=plaintext)
    assert client.get("/api/v1/tasks/").status_code == 200

    output = run_command("revoke_api_key", key.prefix).stdout

    assert f"Revoked API key 'leaked' ({key.prefix})" in output
    assert client.get("/api/v1/tasks/").status_code == 401


def test_revoke_accepts_the_whole_leaked_key() -> None:
    key, plaintext = api_key_create(name="pasted")

    run_command("revoke_api_key", plaintext)

    key.refresh_from_db()
    assert key.revoked_at is not None


def test_revoke_of_an_unknown_prefix_fails_with_a_hint() -> None:
    with pytest.raises(CommandError, match="no API key with prefix 'deadbeef'"):
        run_command("revoke_api_key", "deadbeef")
