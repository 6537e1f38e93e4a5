"""Add downloads with uploads: .torrent (with web seeds), Metalink, file selection, seeding;
the API's messages next to the field, nothing created when anything is invalid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from dispatcher.models import Task, TaskKind, TaskUpload
from dispatcher.tests.dashboard_fixtures import HTMX, staff, staff_client
from tests.support.torrent import make_metalink, make_torrent

__all__ = ["staff", "staff_client"]

pytestmark = pytest.mark.django_db
SHA = "ab" * 32


def field_errors(response: Any, field: str) -> list[str]:
    return list(response.context["form"].errors.get(field, []))


@pytest.fixture
def torrent(tmp_path: Path) -> bytes:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a" * 20_000)
    (root / "sub" / "b.txt").write_bytes(b"b" * 30_000)
    return make_torrent([root / "a.txt", root / "sub" / "b.txt"], name="pack", root=root)


def metalink() -> bytes:
    return make_metalink(
        [
            {"name": "one.iso", "size": 10, "sha256": SHA, "urls": ["http://a.example/one.iso"]},
            {"name": "two.iso", "size": 20, "sha256": SHA, "urls": ["http://a.example/two.iso"]},
        ]
    )


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def test_the_form_offers_uploads_web_seeds_selection_and_seeding(staff_client: Client) -> None:
    body = staff_client.get("/tasks/add/").content.decode()
    for name in ("torrent", "metalink", "web_seeds", "pause_for_selection"):
        assert f'name="{name}"' in body
    assert 'name="seed_time"' in body and 'name="seed_ratio"' in body
    assert 'type="file"' in body and 'accept=".torrent' in body


def test_a_torrent_with_web_seeds_and_seeding_becomes_one_task_with_its_files(
    staff_client: Client, torrent: bytes
) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {
            "uris": "",
            "torrent": upload("pack.torrent", torrent),
            "web_seeds": "http://seed.example/pack/\nhttp://seed2.example/pack/",
            "pause_for_selection": "on",
            "seed_time": "5",
            "seed_ratio": "1.5",
            "priority": "3",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    task = Task.objects.get()
    assert task.kind == TaskKind.TORRENT and task.name == "pack"
    assert task.uris == ["http://seed.example/pack/", "http://seed2.example/pack/"]
    assert task.options == {"seed-time": "5", "seed-ratio": "1.5"}
    assert task.pause_for_selection is True and task.priority == 3
    assert [f["path"] for f in task.files] == ["pack/a.txt", "pack/sub/b.txt"]
    assert bytes(TaskUpload.objects.get(task=task).content) == torrent


def test_lines_and_a_metalink_are_created_together(staff_client: Client) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {
            "uris": "http://a.x/f.iso\nmagnet:?xt=urn:btih:abc",
            "metalink": upload("set.meta4", metalink()),
            "pause_for_selection": "on",
            "priority": "2",
        },
    )
    assert response.status_code == 302
    plain, magnet, meta = Task.objects.order_by("pk")
    assert (plain.kind, magnet.kind, meta.kind) == ("uri", "magnet", "metalink")
    # A plain URL has nothing to choose: only the others wait for a selection.
    assert (plain.pause_for_selection, magnet.pause_for_selection) == (False, True)
    assert meta.pause_for_selection is True
    assert meta.total_length == 30


def test_a_broken_torrent_is_refused_next_to_its_field_with_the_apis_message(
    staff_client: Client, api_client: Any
) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {"uris": "http://a.x/ok.iso", "torrent": upload("bad.torrent", b"d4:infoi1ee")},
    )
    assert response.status_code == 400
    api = api_client.post(
        "/api/v1/tasks/", {"torrent": upload("bad.torrent", b"d4:infoi1ee")}, format="multipart"
    )
    assert field_errors(response, "torrent") == api.json()["detail"]["torrent"]
    assert Task.objects.count() == 0


def test_an_empty_upload_gets_the_apis_message(staff_client: Client) -> None:
    response = staff_client.post("/tasks/add/", {"metalink": upload("x.meta4", b"")})
    assert field_errors(response, "metalink") == ["'metalink' is empty"]
    assert not field_errors(response, "uris")


def test_an_upload_over_the_limit_is_refused_with_the_apis_message(
    staff_client: Client, configure: Any
) -> None:
    configure(security={"max_upload_bytes": 1024})
    limit = 1024
    big = upload("big.torrent", b"x" * (limit + 1))
    response = staff_client.post("/tasks/add/", {"torrent": big})
    assert field_errors(response, "torrent") == [
        f"'torrent' is {limit + 1} bytes; the limit is {limit} (security.max_upload_bytes)"
    ]
    assert Task.objects.count() == 0


def test_bad_web_seeds_and_seeding_bounds_show_next_to_their_fields(
    staff_client: Client, torrent: bytes, api_client: Any
) -> None:
    response = staff_client.post(
        "/tasks/add/",
        {
            "torrent": upload("pack.torrent", torrent),
            "web_seeds": "magnet:?xt=urn:btih:abc",
            "seed_time": "100000",
            "seed_ratio": "0",
        },
    )
    assert response.status_code == 400
    assert field_errors(response, "web_seeds") == [
        "with an uploaded torrent, 'uris' are web seeds: plain http(s)/ftp URLs only"
    ]
    api = api_client.post(
        "/api/v1/tasks/", {"url": "http://a.x/f", "options": {"seed-time": "100000"}}, format="json"
    )
    assert field_errors(response, "seed_time") == api.json()["detail"]["options"]
    assert field_errors(response, "seed_ratio")[0].startswith(
        "option 'seed-ratio': must be above 0"
    )
    assert Task.objects.count() == 0


def test_web_seeds_need_a_torrent_and_a_metalink_takes_no_uris(staff_client: Client) -> None:
    response = staff_client.post(
        "/tasks/add/", {"uris": "http://a.x/f", "web_seeds": "http://seed.example/f"}
    )
    assert field_errors(response, "web_seeds") == ["web seeds go with an uploaded .torrent file"]
    assert Task.objects.count() == 0


def test_an_htmx_upload_with_an_error_re_renders_the_form_and_asks_for_the_file_again(
    staff_client: Client,
) -> None:
    response = staff_client.post(
        "/tasks/add/", {"metalink": upload("x.meta4", b"<nope/>"), "tags": "bad tag!"}, **HTMX
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<form id="add-form"')
    assert "not a Metalink" in body
    assert "use 1-64 letters, digits or _ . : = / -" in body
    assert "Choose the files to upload again." in body
    assert Task.objects.count() == 0
