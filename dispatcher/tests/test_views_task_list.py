"""The task list: filters, search, sort, keyset pages, the rows fragment and bulk actions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dispatcher import services
from dispatcher.keyset import decode_cursor, encode_cursor
from dispatcher.models import Priority, Task, TaskStatus
from dispatcher.tests.dashboard_fixtures import HTMX, member, member_client, staff, staff_client

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def make_tasks(n: int, **fields: object) -> list[Task]:
    return Task.objects.bulk_create(
        Task(name=f"file-{i}.bin", uris=[f"http://e.x/file-{i}.bin"], **fields) for i in range(n)
    )


def row_ids(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="task-(\d+)"', body)]


def test_the_list_shows_the_newest_fifty_tasks_with_a_next_link(staff_client: Client) -> None:
    tasks = make_tasks(60)
    response = staff_client.get("/tasks/")
    ids = row_ids(response.content.decode())
    assert ids == sorted((t.pk for t in tasks), reverse=True)[:50]
    assert 'rel="next"' in response.content.decode()


def test_following_next_then_previous_walks_the_pages_without_gaps(staff_client: Client) -> None:
    tasks = make_tasks(120)
    expected = sorted((t.pk for t in tasks), reverse=True)
    seen: list[int] = []
    url = "/tasks/"
    pages = []
    while url:
        body = staff_client.get(url).content.decode()
        pages.append(body)
        seen += row_ids(body)
        found = re.search(r'href="(/tasks/\?[^"]*after=[^"]+)"', body)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == expected
    back = re.search(r'href="(/tasks/\?[^"]*before=[^"]+)"', pages[-1])
    assert back is not None
    previous = staff_client.get(back.group(1).replace("&amp;", "&")).content.decode()
    assert row_ids(previous) == expected[50:100]


def test_the_list_page_makes_the_same_few_queries_for_5_or_50_rows(staff_client: Client) -> None:
    make_tasks(5)
    staff_client.get("/tasks/")
    with CaptureQueriesContext(connection) as few:
        staff_client.get("/tasks/")
    make_tasks(45)
    with CaptureQueriesContext(connection) as many:
        staff_client.get("/tasks/")
    assert len(few) == len(many) <= 6


def test_filters_by_status_tag_kind_and_search(staff_client: Client) -> None:
    services.task_create(url="http://e.x/alpha.iso", tags=["video"])
    beta = services.task_create(url="http://e.x/beta.iso")
    Task.objects.filter(pk=beta.pk).update(status=TaskStatus.FAILED)
    assert row_ids(staff_client.get("/tasks/?status=failed").content.decode()) == [beta.pk]
    assert len(row_ids(staff_client.get("/tasks/?tag=video").content.decode())) == 1
    assert row_ids(staff_client.get("/tasks/?q=beta").content.decode()) == [beta.pk]
    assert row_ids(staff_client.get("/tasks/?kind=magnet").content.decode()) == []


def test_sorting_by_priority_puts_urgent_first(staff_client: Client) -> None:
    low = services.task_create(url="http://e.x/low", priority="low")
    urgent = services.task_create(url="http://e.x/urgent", priority="urgent")
    body = staff_client.get("/tasks/?sort=priority").content.decode()
    assert row_ids(body) == [urgent.pk, low.pk]


def test_an_unknown_sort_or_a_bad_cursor_falls_back_to_the_first_page(
    staff_client: Client,
) -> None:
    make_tasks(3)
    response = staff_client.get("/tasks/?sort=drop-table&after=%%%")
    assert response.status_code == 200
    assert len(row_ids(response.content.decode())) == 3


def test_cursors_round_trip_and_reject_junk() -> None:
    assert decode_cursor(encode_cursor([3, "x"]), 2) == [3, "x"]
    assert decode_cursor("not-base64!!", 1) is None
    assert decode_cursor(encode_cursor([[1]]), 1) is None


def test_an_htmx_request_gets_only_the_table_partial(staff_client: Client) -> None:
    make_tasks(2)
    body = staff_client.get("/tasks/?status=pending", **HTMX).content.decode()
    assert body.lstrip().startswith('<div id="task-table"')
    assert "<html" not in body


def test_the_rows_fragment_renders_just_the_asked_rows(staff_client: Client) -> None:
    tasks = make_tasks(3)
    body = staff_client.get(f"/tasks/rows/?ids={tasks[0].pk},{tasks[2].pk}").content.decode()
    assert sorted(row_ids(body)) == sorted([tasks[0].pk, tasks[2].pk])
    assert "<table" not in body


def test_a_row_shows_progress_as_a_bar_with_text(staff_client: Client) -> None:
    (task,) = make_tasks(1, total_length=1000, completed_length=250)
    body = staff_client.get(f"/tasks/rows/?ids={task.pk}").content.decode()
    assert '<progress max="100" value="25.00"' in body
    assert "25%" in body


def test_a_member_sees_only_their_own_tasks_and_rows(member_client: Client, member: User) -> None:
    theirs = services.task_create(url="http://e.x/theirs")
    mine = services.task_create(url="http://e.x/mine", owner=member)
    assert row_ids(member_client.get("/tasks/").content.decode()) == [mine.pk]
    body = member_client.get(f"/tasks/rows/?ids={theirs.pk},{mine.pk}").content.decode()
    assert row_ids(body) == [mine.pk]


def test_bulk_pause_pauses_the_selected_tasks_and_redirects_back(staff_client: Client) -> None:
    a = services.task_create(url="http://e.x/a")
    b = services.task_create(url="http://e.x/b")
    response = staff_client.post(
        "/tasks/bulk/", {"action": "pause", "task": [a.pk, b.pk], "next": "/tasks/?sort=name"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/tasks/?sort=name"
    assert set(Task.objects.values_list("status", flat=True)) == {TaskStatus.PAUSED}


def test_bulk_actions_report_refusals_and_still_apply_the_rest(staff_client: Client) -> None:
    a = services.task_create(url="http://e.x/a")
    done = services.task_create(url="http://e.x/done")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.COMPLETED)
    response = staff_client.post(
        "/tasks/bulk/", {"action": "cancel", "task": [a.pk, done.pk]}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="task-table"')
    assert 'hx-swap-oob="true"' in body
    assert f"#{done.pk}: cannot cancel a task that is completed" in body
    assert Task.objects.get(pk=a.pk).status == TaskStatus.CANCELED


def test_bulk_priority_sets_the_chosen_priority(staff_client: Client) -> None:
    a = services.task_create(url="http://e.x/a")
    staff_client.post("/tasks/bulk/", {"action": "priority", "priority": "4", "task": [a.pk]})
    assert Task.objects.get(pk=a.pk).priority == Priority.URGENT


def test_bulk_actions_ignore_tasks_a_member_does_not_own(
    member_client: Client, member: User
) -> None:
    theirs = services.task_create(url="http://e.x/theirs")
    member_client.post("/tasks/bulk/", {"action": "cancel", "task": [theirs.pk]})
    assert Task.objects.get(pk=theirs.pk).status == TaskStatus.PENDING


def test_bulk_posts_need_a_csrf_token(staff: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post("/tasks/bulk/", {"action": "pause"}).status_code == 403


def test_a_bulk_redirect_never_leaves_the_site(staff_client: Client) -> None:
    response = staff_client.post("/tasks/bulk/", {"action": "pause", "next": "https://evil.x/"})
    assert response["Location"] == "/tasks/"
