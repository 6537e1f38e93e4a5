"""Users and logged-in clients for the dashboard's view tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user("staff", password="pw-staff-1234", is_staff=True)


@pytest.fixture
def member(db: None) -> User:
    return User.objects.create_user("member", password="pw-member-1234")


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def member_client(member: User) -> Client:
    client = Client()
    client.force_login(member)
    return client


HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}
