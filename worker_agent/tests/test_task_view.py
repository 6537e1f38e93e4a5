"""How one task's GIDs add up: metadata roots, data leaves, seeding, selection holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker_agent.downloads import Downloads
from worker_agent.journal import Journal, JournalEntry

ROOT = "0000000000070001"


@pytest.fixture
def downloads(tmp_path: Path) -> Downloads:
    return Downloads(rpc=None, journal=Journal(tmp_path / "journal"), download_dir=tmp_path)  # type: ignore[arg-type]


def entry(kind: str, **fields: Any) -> JournalEntry:
    fields.setdefault("options", {})
    return JournalEntry(task_id=7, epoch=1, gid=ROOT, uris=["x"], kind=kind, **fields)


def item(downloads: Downloads, status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, "dir": str(downloads.task_dir(7)), **fields}


def test_a_magnet_whose_metadata_is_complete_but_has_no_data_yet_is_not_complete(
    downloads: Downloads,
) -> None:
    snapshot = {ROOT: item(downloads, "complete", totalLength="300", completedLength="300")}

    view = downloads.view(entry("magnet"), snapshot)

    assert view.status != "complete"
    assert view.phase == "fetching metadata"
    assert view.total_length == 0


def test_a_magnet_counts_only_its_data_leaf_and_completes_with_it(downloads: Downloads) -> None:
    root = item(downloads, "complete", followedBy=["aaaaaaaaaaaaaaaa"], totalLength="300")
    data = item(downloads, "active", totalLength="1000", completedLength="400")
    snapshot = {ROOT: root, "aaaaaaaaaaaaaaaa": data}

    running = downloads.view(entry("magnet"), snapshot)
    data["status"], data["completedLength"] = "complete", "1000"
    done = downloads.view(entry("magnet"), snapshot)

    assert (running.status, running.total_length, running.completed_length) == (
        "active",
        1000,
        400,
    )
    assert done.status == "complete" and done.data_leaves == ["aaaaaaaaaaaaaaaa"]


def test_after_an_aria2c_restart_the_new_data_gid_is_found_by_its_folder(
    downloads: Downloads,
) -> None:
    snapshot = {
        ROOT: item(downloads, "complete", totalLength="300"),
        "bbbbbbbbbbbbbbbb": item(downloads, "complete", totalLength="1000"),
    }

    view = downloads.view(entry("magnet"), snapshot)

    assert view.status == "complete" and view.data_leaves == ["bbbbbbbbbbbbbbbb"]


@pytest.mark.parametrize(("seed_time", "seeding"), [("0", False), ("5", True)])
def test_a_seeder_leaf_has_all_its_data_and_seeds_only_when_asked(
    downloads: Downloads, seed_time: str, seeding: bool
) -> None:
    snapshot = {ROOT: item(downloads, "active", seeder="true", totalLength="10")}

    view = downloads.view(entry("torrent", torrent="x", options={"seed-time": seed_time}), snapshot)

    assert view.status == "complete" and view.seeding is seeding


def test_held_data_is_awaiting_selection_and_not_started(downloads: Downloads) -> None:
    root = item(downloads, "complete", followedBy=["cccccccccccccccc"])
    snapshot = {ROOT: root, "cccccccccccccccc": item(downloads, "paused")}
    held = entry("magnet", hold=True)

    view = downloads.view(held, snapshot)

    assert view.phase == "awaiting selection"
    assert downloads.startable(held, view.members) == [ROOT]
    assert downloads.startable(entry("magnet"), view.members) == view.members


def test_an_uploaded_metalinks_downloads_have_no_root_and_all_count(downloads: Downloads) -> None:
    snapshot = {
        "dddddddddddddddd": item(downloads, "complete", totalLength="5", completedLength="5"),
        "eeeeeeeeeeeeeeee": item(downloads, "error", errorCode="32", errorMessage="bad"),
    }

    view = downloads.view(entry("metalink", metalink="x"), snapshot)

    assert view.status == "error" and view.error_code == 32
    assert sorted(view.data_leaves) == ["dddddddddddddddd", "eeeeeeeeeeeeeeee"]
