from __future__ import annotations

from typing import Any

from tests.support.rangeserver import RangeServer, make_random_file, sha256_of
from worker_agent.downloads import Downloads
from worker_agent.journal import Journal, task_gid
from worker_agent.reconcile import Assignment, reconcile
from worker_agent.supervisor import Aria2Supervisor

from .conftest import wait_until


def assignment(
    server: RangeServer, task_id: int, epoch: int = 1, name: str = "a.bin", **extra: Any
) -> Assignment:
    return Assignment(
        task_id=task_id,
        epoch=epoch,
        uris=[server.url(name)],
        options={"split": "1"},
        **extra,
    )


def make_downloads(supervisor: Aria2Supervisor) -> Downloads:
    journal = Journal(supervisor.state_dir / "journal")
    return Downloads(supervisor.rpc(), journal, supervisor.config.download_dir)


def test_restarted_aria2c_gets_no_duplicate_downloads(supervisor, rangeserver, files):
    digest = make_random_file(files / "a.bin", 1_000_000, seed=5)
    rangeserver.set_throttle(100_000)
    downloads = make_downloads(supervisor)
    wanted = [assignment(rangeserver, 1), assignment(rangeserver, 2)]
    outcome = reconcile(downloads, wanted, fenced=False, finished=set())
    assert sorted(outcome.added) == [1, 2]
    downloads.rpc.call("aria2.saveSession")
    assert supervisor.session_path.read_text().count("gid=") == 2

    supervisor.process.kill()
    supervisor.process.wait()
    rangeserver.set_throttle(None)
    assert wait_until(supervisor.ensure_running, timeout=5)
    downloads.rpc.reconnect(supervisor.port, supervisor.secret)

    # The session file already brought both downloads back: nothing may be added again.
    again = reconcile(downloads, None, fenced=False, finished=set())
    assert again.added == [] and again.orphans_removed == []
    again = reconcile(downloads, wanted, fenced=False, finished=set())
    assert again.added == []
    gids = [task_gid(1, 1), task_gid(2, 1)]

    def all_stopped():
        items = downloads.rpc.poll().downloads
        return all(items[g]["status"] in {"complete", "error"} for g in gids) and items

    items = wait_until(all_stopped)
    assert sorted(items) == sorted(gids)
    assert {items[g]["status"] for g in gids} == {"complete"}
    for task_id in (1, 2):
        assert sha256_of(downloads.task_dir(task_id) / "a.bin") == digest


def test_unlisted_task_is_removed_with_its_folder_and_paused_state_applies(
    supervisor, rangeserver, files
):
    make_random_file(files / "a.bin", 2_000_000, seed=6)
    rangeserver.set_throttle(100_000)
    downloads = make_downloads(supervisor)
    first = assignment(rangeserver, 1)
    second = assignment(rangeserver, 2)
    reconcile(downloads, [first, second], fenced=False, finished=set())
    assert downloads.task_dir(1).exists()

    paused = Assignment(**{**second.__dict__, "state": "pause"})
    outcome = reconcile(downloads, [paused], fenced=False, finished=set())
    assert outcome.dropped == [1]
    assert not downloads.task_dir(1).exists()
    assert list(downloads.journal.entries()) == [2]
    items = downloads.rpc.poll().downloads
    assert task_gid(1, 1) not in items
    assert items[task_gid(2, 1)]["status"] == "paused"


def test_new_epoch_replaces_the_old_gid_and_resumes_the_partial_file(
    supervisor, rangeserver, files
):
    digest = make_random_file(files / "a.bin", 2_000_000, seed=7)
    rangeserver.set_throttle(400_000)
    downloads = make_downloads(supervisor)
    reconcile(downloads, [assignment(rangeserver, 3)], fenced=False, finished=set())
    wait_until(lambda: rangeserver.bytes_served("a.bin") > 600_000)

    rangeserver.set_throttle(None)
    newer = assignment(rangeserver, 3, epoch=2)
    outcome = reconcile(downloads, [newer], fenced=False, finished=set())
    assert outcome.replaced == [3] and outcome.added == [3]
    gid = task_gid(3, 2)
    wait_until(lambda: (downloads.rpc.tell_status(gid) or {}).get("status") == "complete")
    assert task_gid(3, 1) not in downloads.rpc.poll().downloads
    assert sha256_of(downloads.task_dir(3) / "a.bin") == digest
    # The control file let aria2 resume instead of starting over.
    resumed_from = [int(r[6:].split("-")[0]) for r in rangeserver.ranges("a.bin") if r]
    assert max(resumed_from) >= 500_000


def test_options_that_fail_validation_become_a_failed_entry_not_an_aria2_download(
    supervisor, rangeserver
):
    downloads = make_downloads(supervisor)
    bad = Assignment(task_id=9, epoch=1, uris=[rangeserver.url("a.bin")], options={"dir": "/"})
    outcome = reconcile(downloads, [bad], fenced=False, finished=set())
    assert outcome.refused == [9]
    entry = downloads.journal.get(9)
    assert entry is not None
    assert entry.phase == "failed" and entry.error_code is None and "'dir'" in entry.error_message
    assert downloads.rpc.poll().downloads == {}


def test_an_unlisted_task_with_a_pending_completion_keeps_its_files(supervisor, rangeserver, files):
    digest = make_random_file(files / "a.bin", 200_000, seed=9)
    downloads = make_downloads(supervisor)
    reconcile(downloads, [assignment(rangeserver, 4)], fenced=False, finished=set())
    wait_until(lambda: downloads.rpc.poll().downloads[task_gid(4, 1)]["status"] == "complete")
    entry = downloads.journal.get(4)
    assert entry is not None
    # The agent hashed it and owes the dispatcher a completion report when it is restarted; the
    # dispatcher, which accepted that completion before the crash, no longer lists the task.
    entry.phase = "completed"
    downloads.journal.write(entry)

    outcome = reconcile(downloads, [], fenced=False, finished=set())

    assert outcome.dropped == []
    assert downloads.journal.get(4) is not None
    assert sha256_of(downloads.task_dir(4) / "a.bin") == digest
