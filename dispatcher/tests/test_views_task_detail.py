"""The task detail page: redacted inputs, options, files, GIDs, history, actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils.html import escape

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


def _torrent_task(**fields: object) -> Task:
    """A torrent-like task whose file list is known (as after the upload or the first report)."""
    task = services.task_create(url="magnet:?xt=urn:btih:abc&dn=pack")
    files = [
        {"index": 1, "path": "pack/a.txt", "size": 2000, "completed": 500, "selected": True},
        {"index": 2, "path": "pack/b.txt", "size": 4000, "completed": 4000, "selected": True},
        {"index": 3, "path": "pack/c.txt", "size": 1000, "completed": 0, "selected": False},
    ]
    Task.objects.filter(pk=task.pk).update(files=files, **fields)
    return Task.objects.get(pk=task.pk)


def test_each_file_has_its_own_progress_bar_with_text_and_selection(staff_client: Client) -> None:
    task = _torrent_task(status=TaskStatus.DOWNLOADING, phase="", uploaded_length=3 * 1024)
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'aria-label="pack/a.txt: 25.0% downloaded"' in body
    assert 'value="25.0"' in body and 'value="100.0"' in body
    assert "500 B of 2.0 KiB" in body  # screen-reader text
    assert 'name="select" value="1" id="select-file-1" checked' in body
    assert 'name="select" value="3" id="select-file-3" aria-label' in body  # not selected
    assert "skipped" in body
    assert "Uploaded" in body and "3.0 KiB" in body


def test_phase_seeding_and_the_wait_for_a_selection_are_shown(staff_client: Client) -> None:
    task = _torrent_task(pause_for_selection=True, phase="awaiting selection")
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "awaiting selection" in body
    assert 'id="awaiting-selection"' in body
    assert "Download the chosen files" in body
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.COMPLETED, phase="seeding", seeding=True, pause_for_selection=False
    )
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "yes, uploading to peers" in body
    assert 'id="file-select"' not in body  # a finished task has nothing left to choose


def test_a_magnet_fetching_metadata_says_so(staff_client: Client) -> None:
    task = services.task_create(url="magnet:?xt=urn:btih:abc")
    Task.objects.filter(pk=task.pk).update(phase="fetching metadata", status=TaskStatus.QUEUED)
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "Fetching the torrent's metadata" in body


def test_choosing_files_uses_the_apis_service_and_rerenders_the_detail(
    staff_client: Client,
) -> None:
    task = _torrent_task(pause_for_selection=True, phase="awaiting selection")
    response = staff_client.post(f"/tasks/{task.pk}/files/", {"select": ["1", "3"]}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="task-detail"')
    assert "downloading 2 file(s)" in body  # the out-of-band message
    task.refresh_from_db()
    assert task.options["select-file"] == "1,3"
    assert task.pause_for_selection is False
    assert [f["selected"] for f in task.files] == [True, False, True]
    assert task.events.filter(kind="files").count() == 1


def test_choosing_files_without_htmx_redirects_and_takes_index_ranges(
    staff_client: Client,
) -> None:
    task = _torrent_task()
    response = staff_client.post(f"/tasks/{task.pk}/files/", {"indexes": "2-3"})
    assert response.status_code == 302
    assert response["Location"] == f"/tasks/{task.pk}/"
    task.refresh_from_db()
    assert task.options["select-file"] == "2,3"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Choose at least one file."),
        ({"select": ["7"]}, "no file with index 7"),
        ({"indexes": "x"}, "use indexes like 1,3-5"),
    ],
)
def test_a_bad_selection_is_refused_and_changes_nothing(
    staff_client: Client, data: dict[str, object], message: str
) -> None:
    task = _torrent_task(pause_for_selection=True)
    body = staff_client.post(f"/tasks/{task.pk}/files/", data, **HTMX).content.decode()
    assert message in body
    task.refresh_from_db()
    assert "select-file" not in task.options and task.pause_for_selection is True


def test_speed_limits_change_live_through_the_options_service(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso", options={"max-upload-limit": "1M"})
    response = staff_client.post(
        f"/tasks/{task.pk}/limits/",
        {"max_download_limit": "500K", "max_upload_limit": ""},
        **HTMX,
    )
    assert response.status_code == 200
    assert "speed limits set" in response.content.decode()
    task.refresh_from_db()
    assert task.options == {"max-download-limit": "500K"}  # an empty field removes the limit
    assert task.events.filter(kind="options").count() == 1
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'name="max_download_limit" id="id_max_download_limit" value="500K"' in body


def test_a_bad_limit_is_shown_next_to_its_field_with_the_apis_message(
    staff_client: Client, api_client: object
) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    response = staff_client.post(
        f"/tasks/{task.pk}/limits/", {"max_download_limit": "lots", "max_upload_limit": ""}
    )
    assert response.status_code == 400
    api = api_client.post(  # type: ignore[attr-defined]
        f"/api/v1/tasks/{task.pk}/options/",
        {"options": {"max-download-limit": "lots"}},
        format="json",
    )
    (message,) = api.json()["detail"]["options"]
    body = response.content.decode()
    assert 'id="id_max_download_limit-err"' in body and escape(message) in body
    task.refresh_from_db()
    assert task.options == {}


def test_limits_of_a_finished_task_are_refused(staff_client: Client) -> None:
    task = services.task_create(url="http://e.x/f.iso")
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.COMPLETED)
    body = staff_client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'id="limits-form"' not in body
    body = staff_client.post(
        f"/tasks/{task.pk}/limits/", {"max_download_limit": "1M"}, **HTMX
    ).content.decode()
    assert "cannot set max-download-limit of a task that is completed" in body


def test_a_member_cannot_choose_files_or_limits_of_someone_elses_task(
    member_client: Client,
) -> None:
    task = _torrent_task()
    assert member_client.post(f"/tasks/{task.pk}/files/", {"select": ["1"]}).status_code == 404
    assert member_client.post(f"/tasks/{task.pk}/limits/", {}).status_code == 404
    assert member_client.get(f"/tasks/{task.pk}/files/").status_code in (404, 405)
