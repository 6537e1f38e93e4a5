from __future__ import annotations

from tests.support.rangeserver import make_random_file, sha256_of
from worker_agent.aria2_rpc import gid_tree
from worker_agent.journal import task_gid

from .conftest import wait_until


def test_range_served_file_downloads_complete_with_the_right_sha256(
    supervisor, rangeserver, files, tmp_path
):
    digest = make_random_file(files / "big.bin", 3_000_000, seed=1)
    rpc = supervisor.rpc()
    gid = task_gid(1, 1)
    folder = supervisor.config.download_dir / "task-1"
    options = {
        "gid": gid,
        "dir": str(folder),
        "split": "4",
        "max-connection-per-server": "4",
        "min-split-size": "1M",
    }
    assert rpc.add_uri([rangeserver.url("big.bin") + "?throttle=2000000"], options) == gid

    status = wait_until(lambda: (s := rpc.tell_status(gid)) and s["status"] == "complete" and s)
    assert status["completedLength"] == "3000000"
    assert sha256_of(folder / "big.bin") == digest
    assert gid_tree(gid, rpc.poll().downloads) == [gid]
    # Throttled connections make aria2 really split the file into ranges.
    assert rangeserver.requests("big.bin") >= 2


def test_missing_file_ends_in_error_code_3(supervisor, rangeserver):
    rpc = supervisor.rpc()
    gid = task_gid(2, 1)
    folder = supervisor.config.download_dir / "task-2"
    rpc.add_uri([rangeserver.url("nope.bin")], {"gid": gid, "dir": str(folder)})
    status = wait_until(lambda: (s := rpc.tell_status(gid)) and s["status"] == "error" and s)
    assert status["errorCode"] == "3"


def test_flaky_path_is_retried_by_aria2_until_served(supervisor, rangeserver, files):
    digest = make_random_file(files / "flaky.bin", 100_000, seed=2)
    rangeserver.set_flaky("flaky.bin", 2, mode="drop")
    rpc = supervisor.rpc()
    gid = task_gid(3, 1)
    folder = supervisor.config.download_dir / "task-3"
    options = {"gid": gid, "dir": str(folder), "max-tries": "5", "retry-wait": "1"}
    rpc.add_uri([rangeserver.url("flaky.bin")], options)
    wait_until(lambda: rpc.tell_status(gid)["status"] in {"complete", "error"})
    assert rpc.tell_status(gid)["status"] == "complete"
    assert sha256_of(folder / "flaky.bin") == digest
    assert rangeserver.requests("flaky.bin") >= 3
