"""End to end, every input kind: .torrent (web seeds, upload and URL), Metalink (upload and URL),
checksums, mirrors losing a server, option changes, file selection, capability routing.

Real dispatcher, agents and aria2c; sources are Range servers on 127.0.0.1, no tracker, no peers.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import Cluster, dump_logs, running_cluster
from tests.support.rangeserver import RangeServer, make_random_file, sha256_of
from tests.support.torrent import b64, make_metalink, make_torrent

pytestmark = [pytest.mark.e2e, pytest.mark.any_backend]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("e2e-inputs")
    with running_cluster(base) as running:
        yield running


def _done(cluster: Cluster, task_id: int, timeout: float = 20.0) -> dict[str, Any]:
    task = cluster.api.wait_for(task_id, {"completed", "failed"}, timeout=timeout)
    assert task["status"] == "completed", (task, dump_logs(cluster.local.data_dir.parent))
    return task


def _assert_files(cluster: Cluster, task: dict[str, Any], expected: dict[str, str]) -> None:
    """Every expected file (path relative to the task folder → sha256) is in the result and on
    the worker's disk with those bytes, and nothing else is."""
    folder = f"task-{task['id']}/"
    got = {f["path"].removeprefix(folder): f["sha256"] for f in task["result"]["files"]}
    assert got == expected, task["result"]
    for relative, digest in expected.items():
        path = cluster.local.download_root / task["worker"] / folder / relative
        assert sha256_of(path) == digest


def _post_form(cluster: Cluster, fields: dict[str, str], files: dict[str, bytes]) -> Any:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    for name, content in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        cluster.api.base_url + "/api/v1/tasks/",
        data=b"".join(parts),
        method="POST",
        headers={
            "X-API-Key": cluster.api.key,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_torrent_with_web_seeds_downloads_with_bittorrent_and_sha256_matches(
    cluster: Cluster,
) -> None:
    url = cluster.add_file("seeded.bin", 1_500_000)
    torrent = make_torrent([cluster.server.root / "seeded.bin"], web_seeds=[url])

    created = cluster.api.post("/api/v1/tasks/", {"torrent": b64(torrent)})

    assert created["kind"] == "torrent" and created["name"] == "seeded.bin"
    task = _done(cluster, created["id"])
    _assert_files(cluster, task, {"seeded.bin": cluster.files["seeded.bin"]})
    assert task["files"][0]["completed"] == 1_500_000
    assert task["seeding"] is False
    found = cluster.api.get(f"/api/v1/tasks/?sha256={cluster.files['seeded.bin']}")
    assert [t["id"] for t in found["results"]] == [task["id"]]


def test_a_multi_file_torrent_uploaded_as_a_form_waits_for_a_file_selection(
    cluster: Cluster,
) -> None:
    root = cluster.server.root / "pack"
    digests = {
        "pack/a.bin": make_random_file(root / "a.bin", 400_000),
        "pack/sub/b.bin": make_random_file(root / "sub" / "b.bin", 300_000),
    }
    torrent = make_torrent([root / "a.bin", root / "sub" / "b.bin"], name="pack", root=root)
    created = _post_form(
        cluster,
        {"uris": cluster.server.url("/"), "pause_for_selection": "true"},
        {"torrent": torrent},
    )

    waiting = cluster.api.wait_for(
        created["id"], {"downloading", "queued"}, where=lambda t: t["phase"] == "awaiting selection"
    )
    assert [f["path"] for f in waiting["files"]] == ["pack/a.bin", "pack/sub/b.bin"]
    time.sleep(0.5)
    assert cluster.api.task(created["id"])["completed_length"] == 0
    cluster.api.post(f"/api/v1/tasks/{created['id']}/files/", {"select": [2]})

    task = _done(cluster, created["id"])
    _assert_files(cluster, task, {"pack/sub/b.bin": digests["pack/sub/b.bin"]})
    assert [f["selected"] for f in task["files"]] == [False, True]


def test_a_torrent_url_is_fetched_then_its_data_downloaded(cluster: Cluster) -> None:
    url = cluster.add_file("via-url.bin", 700_000)
    torrent = make_torrent([cluster.server.root / "via-url.bin"], web_seeds=[url])
    (cluster.server.root / "via-url.torrent").write_bytes(torrent)

    created = cluster.api.post("/api/v1/tasks/", {"url": cluster.server.url("via-url.torrent")})

    assert created["kind"] == "torrent"
    task = _done(cluster, created["id"])
    _assert_files(cluster, task, {"via-url.bin": cluster.files["via-url.bin"]})


def _two_file_metalink(cluster: Cluster, prefix: str, *, wrong: bool = False) -> bytes:
    entries = []
    for index, size in enumerate((600_000, 250_000)):
        name = f"{prefix}-{index}.bin"
        url = cluster.add_file(name, size)
        digest = "0" * 64 if wrong and index == 1 else cluster.files[name]
        entries.append({"name": name, "size": size, "sha256": digest, "urls": [url]})
    return make_metalink(entries)


def test_an_uploaded_metalink_v4_downloads_both_files_verified(cluster: Cluster) -> None:
    document = _two_file_metalink(cluster, "ml-up")

    created = cluster.api.post("/api/v1/tasks/", {"metalink": b64(document)})

    assert created["kind"] == "metalink" and len(created["files"]) == 2
    task = _done(cluster, created["id"])
    _assert_files(cluster, task, {n: cluster.files[n] for n in ("ml-up-0.bin", "ml-up-1.bin")})
    assert task["completed_length"] == task["total_length"] == 850_000


@pytest.mark.parametrize("suffix", [".meta4", ".metalink"])
def test_a_metalink_url_downloads_both_files_verified(cluster: Cluster, suffix: str) -> None:
    prefix = f"ml-url{suffix.replace('.', '-')}"
    (cluster.server.root / f"{prefix}{suffix}").write_bytes(_two_file_metalink(cluster, prefix))

    created = cluster.api.post("/api/v1/tasks/", {"url": cluster.server.url(prefix + suffix)})

    assert created["kind"] == "metalink"
    task = _done(cluster, created["id"])
    _assert_files(
        cluster, task, {f"{prefix}-{i}.bin": cluster.files[f"{prefix}-{i}.bin"] for i in (0, 1)}
    )


def test_a_metalink_with_a_wrong_hash_fails_at_once_with_checksum_mismatch(
    cluster: Cluster,
) -> None:
    document = _two_file_metalink(cluster, "ml-bad", wrong=True)

    created = cluster.api.post("/api/v1/tasks/", {"metalink": b64(document)})

    task = cluster.api.wait_for(created["id"], {"failed", "completed"}, timeout=20)
    assert task["status"] == "failed", task
    assert task["error_class"] == "permanent" and task["attempts"] == 1
    assert "checksum mismatch" in task["error_message"], task["error_message"]


def test_a_checksum_option_mismatch_fails_at_once_with_checksum_mismatch(
    cluster: Cluster,
) -> None:
    url = cluster.add_file("sum.bin", 200_000)

    ok = cluster.api.post(
        "/api/v1/tasks/",
        {"url": url, "options": {"checksum": f"sha-256={cluster.files['sum.bin']}"}},
    )
    bad = cluster.api.post(
        "/api/v1/tasks/", {"url": url, "options": {"checksum": "sha-256=" + "1" * 64}}
    )

    cluster.assert_downloaded(_done(cluster, ok["id"]), "sum.bin")
    task = cluster.api.wait_for(bad["id"], {"failed", "completed"}, timeout=20)
    assert task["status"] == "failed" and task["error_code"] == 32, task
    assert "checksum mismatch" in task["error_message"]


def test_mirrors_complete_correctly_when_one_server_dies_mid_download(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.add_file("dying.bin", 4_000_000)
    (tmp_path / "dying.bin").write_bytes((cluster.server.root / "dying.bin").read_bytes())
    other = RangeServer(tmp_path).start()
    try:
        # Another host name: aria2 counts max-connection-per-server by host, not port.
        mirror = other.url("dying.bin").replace("127.0.0.1", "localhost")
        uris = [url + "?throttle=400000", mirror + "?throttle=400000"]
        created = cluster.api.post(
            "/api/v1/tasks/",
            {
                "uris": uris,
                "options": {"split": "4", "max-connection-per-server": "2", "min-split-size": "1M"},
            },
        )
        cluster.api.wait_for(
            created["id"],
            {"downloading"},
            where=lambda t: other.bytes_served("dying.bin") > 200_000,
        )
    finally:
        other.stop()
    task = _done(cluster, created["id"], timeout=40)
    cluster.assert_downloaded(task, "dying.bin")


def test_a_speed_limit_changes_live_on_a_running_download(cluster: Cluster) -> None:
    url = cluster.add_file("limited.bin", 3_000_000)
    created = cluster.api.post(
        "/api/v1/tasks/", {"url": url, "options": {"max-download-limit": "100K"}}
    )
    cluster.api.wait_for(created["id"], {"downloading"}, where=lambda t: t["completed_length"] > 0)
    time.sleep(1.0)
    assert cluster.api.task(created["id"])["completed_length"] < 1_000_000

    changed = cluster.api.call(
        "PATCH", f"/api/v1/tasks/{created['id']}/", {"options": {"max-download-limit": None}}
    )

    assert changed["options"] == {}
    started = time.monotonic()
    task = _done(cluster, created["id"], timeout=15)
    assert time.monotonic() - started < 8
    cluster.assert_downloaded(task, "limited.bin")


def test_a_non_live_option_change_restarts_the_download_keeping_its_data(
    cluster: Cluster,
) -> None:
    url = cluster.add_file("restart.bin", 3_000_000)
    created = cluster.api.post(
        "/api/v1/tasks/", {"url": url + "?throttle=600000", "options": {"split": "1"}}
    )
    cluster.api.wait_for(
        created["id"], {"downloading"}, where=lambda t: t["completed_length"] > 500_000
    )

    cluster.api.post(f"/api/v1/tasks/{created['id']}/options/", {"options": {"split": "2"}})

    task = _done(cluster, created["id"], timeout=20)
    cluster.assert_downloaded(task, "restart.bin")
    resumed = [
        r for r in cluster.server.ranges("restart.bin") if r and not r.startswith("bytes=0-")
    ]
    assert resumed, cluster.server.ranges("restart.bin")


def test_a_torrent_waits_for_a_bittorrent_worker_with_a_visible_reason(tmp_path: Path) -> None:
    no_bt = {"w1": {"capabilities": {"supports_bt": False, "supports_metalink": False}}}
    with running_cluster(tmp_path, workers=1, agent_options=no_bt) as cluster:
        url = cluster.add_file("routed.bin", 300_000)
        torrent = make_torrent([cluster.server.root / "routed.bin"], web_seeds=[url])
        (cluster.server.root / "routed.meta4").write_bytes(
            make_metalink(
                [
                    {
                        "name": "routed.bin",
                        "size": 300_000,
                        "sha256": cluster.files["routed.bin"],
                        "urls": [url],
                    }
                ]
            )
        )
        by_upload = cluster.api.post("/api/v1/tasks/", {"torrent": b64(torrent)})
        by_url = cluster.api.post("/api/v1/tasks/", {"url": cluster.server.url("routed.meta4")})

        waiting = cluster.api.wait_for(
            by_upload["id"], {"pending"}, where=lambda t: bool(t["pending_reason"])
        )
        assert waiting["pending_reason"] == "no online worker supports BitTorrent"
        other = cluster.api.wait_for(
            by_url["id"], {"pending"}, where=lambda t: bool(t["pending_reason"])
        )
        assert other["pending_reason"] == "no online worker supports Metalink"
        time.sleep(1.5)
        assert cluster.api.task(by_upload["id"])["status"] == "pending"

        cluster.start_agent("w2")
        for task_id in (by_upload["id"], by_url["id"]):
            task = _done(cluster, task_id)
            assert task["worker"] == "w2"
            _assert_files(cluster, task, {"routed.bin": cluster.files["routed.bin"]})


def test_a_torrent_asking_to_seed_is_completed_seeding_then_stops(cluster: Cluster) -> None:
    url = cluster.add_file("seeding.bin", 500_000)
    torrent = make_torrent([cluster.server.root / "seeding.bin"], web_seeds=[url])

    created = cluster.api.post(
        "/api/v1/tasks/", {"torrent": b64(torrent), "options": {"seed-time": "0.05"}}
    )

    seeding = cluster.api.wait_for(created["id"], {"completed"}, where=lambda t: t["seeding"])
    assert seeding["phase"] == "seeding"
    _assert_files(cluster, seeding, {"seeding.bin": cluster.files["seeding.bin"]})
    stopped = cluster.api.wait_for(
        created["id"], {"completed"}, timeout=20, where=lambda t: not t["seeding"]
    )
    assert stopped["phase"] == "" and stopped["upload_speed"] == 0
    assert (cluster.local.download_root / stopped["worker"] / f"task-{stopped['id']}").is_dir()


def test_an_uploaded_metalink_waits_for_a_file_selection(cluster: Cluster) -> None:
    document = _two_file_metalink(cluster, "ml-pick")

    created = cluster.api.post(
        "/api/v1/tasks/", {"metalink": b64(document), "pause_for_selection": True}
    )

    cluster.api.wait_for(
        created["id"], {"queued", "downloading"}, where=lambda t: t["phase"] == "awaiting selection"
    )
    time.sleep(0.5)
    assert cluster.api.task(created["id"])["completed_length"] == 0
    cluster.api.post(f"/api/v1/tasks/{created['id']}/files/", {"select": [2]})

    task = _done(cluster, created["id"])
    _assert_files(cluster, task, {"ml-pick-1.bin": cluster.files["ml-pick-1.bin"]})
    assert [(f["index"], f["path"], f["selected"]) for f in task["files"]] == [
        (1, "ml-pick-0.bin", False),
        (2, "ml-pick-1.bin", True),
    ]
