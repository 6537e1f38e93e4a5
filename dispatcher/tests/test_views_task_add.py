"""The Add downloads form: one task per line, mirrors on one line, API messages, all or nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dispatcher.forms import parse_download_lines
from dispatcher.models import Task
from dispatcher.tests.dashboard_fixtures import HTMX, member, member_client, staff, staff_client

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def field_errors(response: object, field: str) -> list[str]:
    return list(response.context["form"].errors.get(field, []))  # type: ignore[attr-defined]


def test_the_form_renders(staff_client: Client) -> None:
    body = staff_client.get("/tasks/add/").content.decode()
    assert 'name="uris"' in body
    assert 'enctype="multipart/form-data"' in body


def test_lines_are_parsed_like_an_aria2_input_file() -> None:
    text = "# comment\nhttp://a/x http://b/x\n\n  magnet:?xt=urn:btih:abc  \n"
    assert parse_download_lines(text) == [
        (2, ["http://a/x", "http://b/x"]),
        (4, ["magnet:?xt=urn:btih:abc"]),
    ]


def test_each_line_becomes_one_task_and_mirrors_share_one(
    staff_client: Client, staff: User
) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {
            "uris": "http://a.x/f.iso http://b.x/f.iso\nmagnet:?xt=urn:btih:abc&dn=film",
            "priority": "3",
            "tags": "site=home video",
            "split": "4",
            "header": "X-Token: 1\nAccept: */*",
            "more_options": "seed-time=0",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/tasks/"
    first, second = Task.objects.order_by("pk")
    assert first.uris == ["http://a.x/f.iso", "http://b.x/f.iso"]
    assert first.options == {
        "split": "4",
        "header": ["X-Token: 1", "Accept: */*"],
        "seed-time": "0",
    }
    assert (first.priority, first.tags, first.owner_id) == (3, ["site=home", "video"], staff.pk)
    assert second.kind == "magnet"


def test_one_bad_line_creates_nothing_and_names_the_line(staff_client: Client) -> None:
    response = staff_client.post(
        "/tasks/add/", {"uris": "http://a.x/ok.iso\ngopher://old.x/f", "priority": "2"}
    )
    assert response.status_code == 400
    (error,) = field_errors(response, "uris")
    assert error.startswith("line 2: 'gopher://old.x/f': ")
    assert "scheme 'gopher' is not allowed" in error
    assert Task.objects.count() == 0


def test_option_errors_show_next_to_their_field_with_the_apis_message(
    staff_client: Client, api_client: object
) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {"uris": "http://a.x/f", "priority": "2", "split": "99", "more_options": "dir=/etc"},
    )
    api = api_client.post(  # type: ignore[attr-defined]
        "/api/v1/tasks/", {"url": "http://a.x/f", "options": {"split": "99"}}, format="json"
    )
    assert field_errors(response, "split") == api.json()["detail"]["options"]
    assert field_errors(response, "more_options") == [
        "option 'dir': not an allowed per-task option"
    ]
    assert Task.objects.count() == 0


def test_out_is_refused_with_several_lines(staff_client: Client) -> None:
    response = staff_client.post(
        "/tasks/add/", {"uris": "http://a.x/1\nhttp://a.x/2", "priority": "2", "out": "x.bin"}
    )
    assert field_errors(response, "out") == ["out names one file; use it with a single line"]


def test_bad_tags_and_an_empty_textarea_are_reported(staff_client: Client) -> None:
    response = staff_client.post("/tasks/add/", {"uris": "  \n", "tags": "bad tag!"})
    assert field_errors(response, "uris")
    assert field_errors(response, "tags") == ["'tag!': use 1-64 letters, digits or _ . : = / -"]


def test_an_htmx_post_with_errors_re_renders_just_the_form(staff_client: Client) -> None:
    response = staff_client.post("/tasks/add/", {"uris": "nope", "priority": "2"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 400
    assert body.lstrip().startswith('<form id="add-form"')
    assert "Nothing was added" in body


def test_members_can_add_downloads_they_then_own(member_client: Client, member: User) -> None:
    member_client.post("/tasks/add/", {"uris": "http://a.x/f", "priority": "2"})
    assert Task.objects.get().owner_id == member.pk


def test_an_htmx_post_that_succeeds_navigates_to_the_task_list(staff_client: Client) -> None:
    response = staff_client.post("/tasks/add/", {"uris": "http://a.x/f", "priority": "2"}, **HTMX)
    assert response["HX-Redirect"] == "/tasks/"
    assert Task.objects.count() == 1
