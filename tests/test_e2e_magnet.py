"""End to end, a real magnet link offline: a second aria2c seeds a generated torrent, a tiny HTTP
tracker on 127.0.0.1 introduces the peers (DHT, LPD and peer exchange off everywhere).

The task shows "fetching metadata" (never completion) while the metadata GID works, downloads
the data, survives its worker's aria2c being killed mid-data (the data GID is new after the
restart) and completes once with the right bytes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.bittorrent import Seeder, Tracker
from tests.support.e2e import Cluster, dump_logs, running_cluster
from tests.support.rangeserver import make_random_file, sha256_of
from tests.support.torrent import info_hash, make_torrent

pytestmark = [pytest.mark.e2e, pytest.mark.any_backend]

SIZE = 2_000_000


def _aria2c_pid(cluster: Cluster, worker: str) -> int:
    """The pid of `worker`'s own aria2c, found by its exact --conf-path (nothing else matches)."""
    marker = f"--conf-path={cluster.local.download_root / worker / '.agent' / 'aria2.conf'}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in args:
            return int(entry.name)
    raise AssertionError(f"no aria2c with {marker}")


def test_a_magnet_fetches_metadata_then_data_and_survives_an_aria2c_restart(
    tmp_path: Path,
) -> None:
    seed_dir = tmp_path / "seed"
    digest = make_random_file(seed_dir / "magnet.bin", SIZE)
    with Tracker(delay=2.0) as tracker, running_cluster(tmp_path / "cluster") as cluster:
        torrent = make_torrent([seed_dir / "magnet.bin"], trackers=[tracker.url])
        tracker_param = quote(tracker.url, safe="")
        magnet = f"magnet:?xt=urn:btih:{info_hash(torrent)}&dn=magnet.bin&tr={tracker_param}"
        with Seeder(torrent, seed_dir, tmp_path / "seeder", upload_limit="500K"):
            created = cluster.api.post("/api/v1/tasks/", {"url": magnet})
            assert created["kind"] == "magnet"

            fetching = cluster.api.wait_for(
                created["id"],
                {"queued", "downloading"},
                where=lambda t: t["phase"] == "fetching metadata",
            )
            assert fetching["status"] != "completed"
            tracker.set_delay(0)
            mid = cluster.api.wait_for(
                created["id"],
                {"downloading"},
                where=lambda t: t["phase"] == "" and t["completed_length"] > SIZE // 4,
            )
            assert mid["total_length"] == SIZE and mid["completed_length"] < SIZE
            assert [f["path"] for f in mid["files"]] == ["magnet.bin"]

            os.kill(_aria2c_pid(cluster, mid["worker"]), signal.SIGKILL)
            time.sleep(0.5)

            task = cluster.api.wait_for(created["id"], {"completed", "failed"}, timeout=40)
            assert task["status"] == "completed", (task, dump_logs(tmp_path / "cluster"))
            (entry,) = task["result"]["files"]
            assert entry["path"] == f"task-{task['id']}/magnet.bin"
            assert entry["sha256"] == digest
            assert sha256_of(cluster.downloaded_path(task)) == digest
            assert task["worker"] == mid["worker"] and task["epoch"] == mid["epoch"]
            events = [e["kind"] for e in cluster.api.get(f"/api/v1/tasks/{task['id']}/events/")]
            assert events.count("completed") == 1 and events.count("assigned") == 1, events
