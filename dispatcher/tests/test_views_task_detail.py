"""The task detail page: redacted inputs, options, files, GIDs, history, actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dispatcher import services
from dispatcher.models import Task, TaskStatus
from dispatcher.redaction import redact_uri
from dispatcher.tests.dashboard_fixtures import HTMX, member, member_client, staff, staff_client

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def test_uris_are_shown_with_credentials_redacted(staff_client: Client) -> None:
    task = services.task_create(
        uris=["https://bob:hunter2@e.x/f.iso?token=abc&x=1", "ftp://alice@m.x/f.iso"]
    )
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "hunter2" not in body
    assert "abc" not in body
    assert "https://bob:***@e.x/f.iso?token=***&amp;x=1" in body
    assert "ftp://***@m.x/f.iso" in body


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://e.x/f.iso", "https://e.x/f.iso"),
        ("https://u:p@e.x/f", "https://u:***@e.x/f"),
        ("https://e.x/f?X-Amz-Signature=s&v=1", "https://e.x/f?X-Amz-Signature=***&v=1"),
        ("magnet:?xt=urn:btih:abc&dn=x", "magnet:?xt=urn:btih:abc&dn=x"),
        ("not a url", "not a url"),
    ],
)
def test_redact_uri_masks_passwords_and_secret_parameters_only(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_detail_shows_options_gid_files_hashes_and_history(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso", options={"split": "4"})
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.COMPLETED,
        gid="0000000000010001",
        result=[{"path": "task-1/f.iso", "size": 2048, "sha256": "ab" * 32}],
    )
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "<code>split</code>" in body
    assert "0000000000010001" in body
    assert "ab" * 32 in body
    assert "2.0 KiB" in body
    assert ("Created" in body and ">created<" in body.lower()) or "Created" in body


def test_an_htmx_request_gets_only_the_detail_partial(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    body = staff_client.get(f"/tasks/{task.pk}/", **HTMX).content.decode()
    assert body.lstrip().startswith('<div id="task-detail"')


def test_pause_then_resume_from_the_detail_page(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    response = staff_client.post(f"/tasks/{task.pk}/pause/")
    assert response.status_code == 302
    assert response["Location"] == f"/tasks/{task.pk}/"
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PAUSED
    response = staff_client.post(f"/tasks/{task.pk}/resume/", **HTMX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="task-detail"')
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING


def test_a_refused_action_says_why_and_changes_nothing(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.COMPLETED)
    body = staff_client.post(f"/tasks/{task.pk}/cancel/", **HTMX).content.decode()
    assert "cannot cancel a task that is completed" in body
    assert Task.objects.get(pk=task.pk).status == TaskStatus.COMPLETED


def test_priority_is_changed_with_the_apis_validation(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    staff_client.post(f"/tasks/{task.pk}/priority/", {"priority": "3"})
    assert Task.objects.get(pk=task.pk).priority == 3
    body = staff_client.post(
        f"/tasks/{task.pk}/priority/", {"priority": "9"}, **HTMX
    ).content.decode()
    assert "must be 1-4 or one of low, normal, high, urgent" in body


def test_actions_are_post_only(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    assert staff_client.get(f"/tasks/{task.pk}/cancel/").status_code == 405


def test_a_member_cannot_see_or_act_on_someone_elses_task(
    member_client: Client, member: User
) -> None:
    theirs = services.task_create(url="http://e.x/theirs")
    assert member_client.get(f"/tasks/{theirs.pk}/").status_code == 404
    assert member_client.post(f"/tasks/{theirs.pk}/cancel/").status_code == 404
    mine = services.task_create(url="http://e.x/mine", owner=member)
    assert member_client.get(f"/tasks/{mine.pk}/").status_code == 200
