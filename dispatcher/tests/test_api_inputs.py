"""Task inputs through the REST API: .torrent / Metalink uploads (JSON and multipart), document
URLs, size limits, malformed uploads, option changes, file selection, the sha256 filter."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from dispatcher import services
from dispatcher.bencode import BencodeError, decode, encode
from dispatcher.models import Task, TaskKind, TaskStatus, TaskUpload
from dispatcher.placement import task_assign_pending
from dispatcher.selectors import assignment_payload
from tests.support.torrent import b64, make_metalink, make_torrent
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

SHA = "ab" * 32


@pytest.fixture
def torrent(tmp_path: Path) -> bytes:
    (tmp_path / "movie.bin").write_bytes(b"x" * 40_000)
    return make_torrent([tmp_path / "movie.bin"], web_seeds=["http://seed.example/movie.bin"])


@pytest.fixture
def multi_torrent(tmp_path: Path) -> bytes:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a" * 20_000)
    (root / "sub" / "b.txt").write_bytes(b"b" * 30_000)
    return make_torrent([root / "a.txt", root / "sub" / "b.txt"], name="pack", root=root)


def metalink(version: int = 4) -> bytes:
    return make_metalink(
        [
            {"name": "one.iso", "size": 10, "sha256": SHA, "urls": ["http://a.example/one.iso"]},
            {"name": "two.iso", "size": 20, "sha256": SHA, "urls": ["http://a.example/two.iso"]},
        ],
        version=version,
    )


def test_a_json_torrent_upload_is_stored_and_its_files_listed(
    api_client: APIClient, torrent: bytes
) -> None:
    body = {"torrent": b64(torrent), "uris": ["http://seed2.example/movie.bin"]}

    response = api_client.post("/api/v1/tasks/", body, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["kind"] == "torrent" and data["name"] == "movie.bin"
    assert data["total_length"] == 40_000
    assert data["files"] == [
        {"index": 1, "path": "movie.bin", "size": 40_000, "selected": True, "completed": 0}
    ]
    assert bytes(TaskUpload.objects.get(task_id=data["id"]).content) == torrent


def test_a_multipart_torrent_upload_takes_options_as_json_and_repeated_uris(
    api_client: APIClient, multi_torrent: bytes
) -> None:
    form = {
        "torrent": SimpleUploadedFile("pack.torrent", multi_torrent),
        "uris": ["http://seed.example/", "http://seed2.example/"],
        "options": '{"split": "2"}',
        "pause_for_selection": "true",
    }

    response = api_client.post("/api/v1/tasks/", form, format="multipart")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["pause_for_selection"] is True
    assert data["options"] == {"split": "2"}
    assert data["uris"] == ["http://seed.example/", "http://seed2.example/"]
    assert [f["path"] for f in data["files"]] == ["pack/a.txt", "pack/sub/b.txt"]


@pytest.mark.parametrize("version", [3, 4])
def test_a_metalink_upload_becomes_one_task_with_every_file(
    api_client: APIClient, version: int
) -> None:
    response = api_client.post(
        "/api/v1/tasks/", {"metalink": b64(metalink(version))}, format="json"
    )

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["kind"] == "metalink" and data["total_length"] == 30
    assert [f["path"] for f in data["files"]] == ["one.iso", "two.iso"]


def test_a_multipart_metalink_upload_is_accepted(api_client: APIClient) -> None:
    form = {"metalink": SimpleUploadedFile("x.meta4", metalink())}
    response = api_client.post("/api/v1/tasks/", form, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "metalink"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://a.example/x.torrent", "torrent"),
        ("http://a.example/x.meta4", "metalink"),
        ("https://a.example/x.METALINK?y=1", "metalink"),
        ("magnet:?xt=urn:btih:" + "a" * 40, "magnet"),
        ("http://a.example/x.iso", "uri"),
    ],
)
def test_a_document_url_is_classified_by_its_suffix(
    api_client: APIClient, url: str, kind: str
) -> None:
    response = api_client.post("/api/v1/tasks/", {"url": url}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == kind


def test_mirrors_of_different_document_kinds_are_refused(api_client: APIClient) -> None:
    body = {"uris": ["http://a.example/x.torrent", "http://a.example/x.iso"]}
    response = api_client.post("/api/v1/tasks/", body, format="json")
    assert response.status_code == 400
    assert "same kind" in response.json()["detail"]["uris"][0]


def test_an_upload_over_max_upload_bytes_answers_413_and_stores_nothing(
    api_client: APIClient, configure: Callable[..., None], torrent: bytes
) -> None:
    configure(security={"max_upload_bytes": 1024})
    big = torrent + b" " * 2000

    as_json = api_client.post("/api/v1/tasks/", {"torrent": b64(big)}, format="json")
    as_form = api_client.post(
        "/api/v1/tasks/", {"torrent": SimpleUploadedFile("a.torrent", big)}, format="multipart"
    )
    in_batch = api_client.post(
        "/api/v1/tasks/batch/", {"tasks": [{"metalink": b64(b"<" * 2000)}]}, format="json"
    )

    for response in (as_json, as_form, in_batch):
        assert response.status_code == 413, response.json()
        assert "max_upload_bytes" in response.json()["error"]
    assert Task.objects.count() == 0 and TaskUpload.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "content", "message"),
    [
        ("torrent", b"d4:infod4:name1:aee", "piece length"),
        ("torrent", b"garbage", "bencode"),
        ("torrent", b"l" * 500 + b"e" * 500, "nested deeper"),
        ("metalink", b"<metalink/>", "not a Metalink"),
        ("metalink", b"<?xml version='1.0'?><a", "XML"),
        (
            "metalink",
            b'<!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<metalink xmlns="urn:ietf:params:xml:ns:metalink">&e;</metalink>',
            "refused",
        ),
    ],
)
def test_a_malformed_upload_answers_400_naming_the_field_and_stores_nothing(
    api_client: APIClient, field: str, content: bytes, message: str
) -> None:
    response = api_client.post("/api/v1/tasks/", {field: b64(content)}, format="json")

    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"][field][0]
    assert Task.objects.count() == 0


def test_upload_that_is_not_base64_is_refused(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/tasks/", {"torrent": "not base64!"}, format="json")
    assert response.status_code == 400
    assert "base64" in response.json()["detail"]["torrent"][0]


def test_a_torrent_with_a_traversing_path_is_refused(api_client: APIClient) -> None:
    evil = encode(
        {
            "info": {
                "name": "x",
                "piece length": 16384,
                "pieces": b"\0" * 20,
                "files": [{"length": 1, "path": ["..", "etc", "passwd"]}],
            }
        }
    )
    response = api_client.post("/api/v1/tasks/", {"torrent": b64(evil)}, format="json")
    assert response.status_code == 400
    assert "unsafe path" in response.json()["detail"]["torrent"][0]


def test_a_metalink_with_uris_is_refused(api_client: APIClient) -> None:
    body = {"metalink": b64(metalink()), "uris": ["http://a.example/x"]}
    assert api_client.post("/api/v1/tasks/", body, format="json").status_code == 400


def test_a_batch_mixes_uploads_and_urls(api_client: APIClient, torrent: bytes) -> None:
    items = [{"torrent": b64(torrent)}, {"metalink": b64(metalink())}, {"url": "http://a/x.iso"}]
    response = api_client.post("/api/v1/tasks/batch/", {"tasks": items}, format="json")
    assert response.status_code == 201, response.json()
    assert [t["kind"] for t in response.json()["tasks"]] == ["torrent", "metalink", "uri"]
    assert TaskUpload.objects.count() == 2


def test_the_assignment_carries_the_upload_in_base64(
    register_worker: Callable[..., Registration],
    make_live: Callable[..., Any],
    torrent: bytes,
) -> None:
    make_live(register_worker("w1").worker)
    task = services.task_create(torrent=b64(torrent), pause_for_selection=True)
    task_assign_pending()
    task.refresh_from_db()

    payload = assignment_payload(task)

    assert base64.b64decode(payload["torrent"]) == torrent
    assert payload["kind"] == "torrent" and payload["pause_for_selection"] is True


def test_seeding_options_are_bounded_by_the_configuration(
    api_client: APIClient, configure: Callable[..., None]
) -> None:
    configure(task_assignment={"max_seed_time": 10.0, "max_seed_ratio": 1.5})
    url = "magnet:?xt=urn:btih:" + "a" * 40

    too_long = api_client.post(
        "/api/v1/tasks/", {"url": url, "options": {"seed-time": "11"}}, format="json"
    )
    ratio_only = api_client.post(
        "/api/v1/tasks/", {"url": url, "options": {"seed-ratio": "1.0"}}, format="json"
    )
    unlimited = api_client.post(
        "/api/v1/tasks/", {"url": url, "options": {"seed-ratio": "0"}}, format="json"
    )

    assert too_long.status_code == 400 and "max_seed_time" in str(too_long.json())
    assert ratio_only.json()["options"] == {"seed-ratio": "1.0", "seed-time": "10"}
    assert unlimited.status_code == 400


def test_tasks_can_be_found_by_a_result_files_sha256(api_client: APIClient) -> None:
    task = services.task_create(url="http://a.example/x.iso")
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.COMPLETED, result=[{"path": "task-1/x.iso", "size": 1, "sha256": SHA}]
    )
    services.task_create(url="http://a.example/y.iso")

    found = api_client.get(f"/api/v1/tasks/?sha256={SHA.upper()}").json()["results"]
    none = api_client.get(f"/api/v1/tasks/?sha256={'cd' * 32}").json()["results"]
    bad = api_client.get("/api/v1/tasks/?sha256=xyz")

    assert [t["id"] for t in found] == [task.pk]
    assert none == [] and bad.status_code == 400


def test_options_of_a_running_task_change_and_the_agent_is_told(
    api_client: APIClient,
    register_worker: Callable[..., Registration],
    make_live: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        "dispatcher.broadcast.send_to_agent", lambda worker, payload: sent.append((worker, payload))
    )
    worker = make_live(register_worker("w1").worker)
    task = services.task_create(url="http://a.example/x.iso", options={"split": "2"})
    task_assign_pending()
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        patched = api_client.patch(
            f"/api/v1/tasks/{task.pk}/",
            {"options": {"max-download-limit": "1M", "split": None}},
            format="json",
        )
    refused = api_client.post(
        f"/api/v1/tasks/{task.pk}/options/", {"options": {"dir": "/tmp"}}, format="json"
    )

    assert patched.status_code == 200, patched.json()
    assert patched.json()["options"] == {"max-download-limit": "1M"}
    task.refresh_from_db()
    assert sent[-1] == (
        worker.pk,
        {
            "type": "options",
            "task_id": task.pk,
            "epoch": task.epoch,
            "options": {"max-download-limit": "1M"},
            "pause_for_selection": False,
        },
    )
    assert refused.status_code == 400 and "'dir'" in refused.json()["detail"]["options"][0]


def test_choosing_files_sets_select_file_and_ends_the_hold(
    api_client: APIClient, multi_torrent: bytes
) -> None:
    task = services.task_create(torrent=b64(multi_torrent), pause_for_selection=True)

    chosen = api_client.post(f"/api/v1/tasks/{task.pk}/files/", {"select": [2]}, format="json")
    unknown = api_client.post(f"/api/v1/tasks/{task.pk}/files/", {"select": [9]}, format="json")
    listed = api_client.get(f"/api/v1/tasks/{task.pk}/files/").json()

    assert chosen.status_code == 200, chosen.json()
    assert chosen.json()["options"]["select-file"] == "2"
    assert chosen.json()["pause_for_selection"] is False
    assert [f["selected"] for f in listed["files"]] == [False, True]
    assert unknown.status_code == 400


def test_a_plain_url_task_has_no_files_to_choose(api_client: APIClient) -> None:
    task = services.task_create(url="http://a.example/x.iso")
    response = api_client.post(f"/api/v1/tasks/{task.pk}/files/", {"select": [1]}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "data",
    [b"i1e1", b"d1:b0:1:a0:e", b"d1:a0:1:a0:e", b"i-0e", b"3:ab", b"" + b"l" * 40 + b"e" * 40],
)
def test_the_bencode_decoder_refuses_malformed_input(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_the_bencode_codec_round_trips() -> None:
    value = {b"a": [1, -2, b"x"], b"b": {b"c": b""}}
    assert decode(encode(value)) == value


def test_kind_of_a_torrent_task_routes_to_bt_workers_only() -> None:
    task = services.task_create(url="http://a.example/x.torrent")
    assert task.kind == TaskKind.TORRENT


def test_the_api_refuses_every_aria2_option_outside_the_allowlist_naming_it(
    api_client: APIClient,
) -> None:
    from worker_agent.options import ALLOWED_TASK_OPTIONS
    from worker_agent.tests.test_option_corpus import aria2_option_names

    for name in aria2_option_names():
        if name in ALLOWED_TASK_OPTIONS:
            continue
        with pytest.raises(ValidationError) as info:
            services.task_create(url="http://a.example/x.iso", options={name: "1"})
        assert f"'{name}'" in info.value.message_dict["options"][0]
    response = api_client.post(
        "/api/v1/tasks/", {"url": "http://a.example/x", "options": {"dir": "/"}}, format="json"
    )
    assert response.status_code == 400 and "'dir'" in response.json()["detail"]["options"][0]
    assert Task.objects.count() == 0
