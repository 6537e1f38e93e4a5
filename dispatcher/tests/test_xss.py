"""Everything a user or a remote server controls is escaped on every page and fragment."""

from __future__ import annotations

import pytest
from django.test import Client

from dispatcher.models import Task, TaskStatus
from dispatcher.tests.dashboard_fixtures import HTMX, staff, staff_client  # noqa: F401

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg/onload=alert(3)>",
    "javascript:alert(4)",
]


def hostile_task(payload: str) -> Task:
    """A failed task whose name, URL, tags, error message and file names carry `payload`."""
    return Task.objects.create(
        name=f"name {payload}",
        uris=[f"http://example.com/{payload}", payload],
        tags=[payload],
        status=TaskStatus.FAILED,
        error_message=f"server said {payload}",
        files=[{"index": 1, "path": f"dir/{payload}", "size": 1, "completed": 0, "selected": True}],
        result=[{"path": f"task-1/{payload}", "size": 1, "sha256": "0" * 64}],
    )


def assert_escaped(html: str, payload: str) -> None:
    assert payload not in html or not any(c in payload for c in "<>\"'"), payload[:20]
    # No attribute or element came out of it.
    assert "<script>alert" not in html
    assert "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert "<svg/onload" not in html
    assert 'href="javascript:' not in html and "href='javascript:" not in html


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_text_is_escaped_on_every_page_and_fragment(
    payload: str,
    staff_client: Client,  # noqa: F811
) -> None:
    task = hostile_task(payload)
    pages = [
        staff_client.get("/"),
        staff_client.get("/tasks/"),
        staff_client.get("/tasks/", HTMX),
        staff_client.get("/tasks/", {"q": payload}),
        staff_client.get(f"/tasks/rows/?ids={task.pk}", HTMX),
        staff_client.get(f"/tasks/{task.pk}/"),
        staff_client.get(f"/tasks/{task.pk}/", HTMX),
    ]
    for response in pages:
        assert response.status_code == 200, response.request["PATH_INFO"]
        assert_escaped(response.content.decode(), payload)
    detail = pages[-2].content.decode()
    assert "server said" in detail


def test_the_csp_forbids_inline_scripts_on_dashboard_pages(
    staff_client: Client,  # noqa: F811
) -> None:
    policy = staff_client.get("/tasks/")["Content-Security-Policy"]

    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "unsafe-eval" not in policy
