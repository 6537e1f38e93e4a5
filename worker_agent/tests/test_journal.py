from __future__ import annotations

import stat

from worker_agent.journal import Journal, JournalEntry, task_gid


def entry(task_id: int = 7, epoch: int = 2) -> JournalEntry:
    return JournalEntry(
        task_id=task_id,
        epoch=epoch,
        gid=task_gid(task_id, epoch),
        uris=["http://127.0.0.1:1/f"],
        options={"split": "2"},
    )


def test_gid_is_twelve_hex_digits_of_task_id_then_four_of_epoch():
    assert task_gid(7, 2) == "0000000000070002"
    assert task_gid(0xABC, 65537) == "000000000abc0001"


def test_written_entry_reads_back_identical(tmp_path):
    journal = Journal(tmp_path / "journal")
    written = entry()
    written.phase, written.started_reported = "added", True
    journal.write(written)
    assert Journal(tmp_path / "journal").get(7) == written
    assert list(journal.entries()) == [7]


def test_write_leaves_no_temporary_file_and_is_private(tmp_path):
    journal = Journal(tmp_path / "journal")
    journal.write(entry())
    journal.write(entry(epoch=3))
    names = [p.name for p in (tmp_path / "journal").iterdir()]
    assert names == ["task-7.json"]
    assert stat.S_IMODE((tmp_path / "journal" / "task-7.json").stat().st_mode) == 0o600
    reread = journal.get(7)
    assert reread is not None and reread.epoch == 3


def test_corrupt_or_stray_files_are_skipped_and_remove_is_idempotent(tmp_path):
    journal = Journal(tmp_path / "journal")
    journal.write(entry(1))
    (tmp_path / "journal" / "task-2.json").write_text("{not json")
    (tmp_path / "journal" / ".task-3.json.tmp").write_text("{}")
    assert list(journal.entries()) == [1]
    journal.remove(1)
    journal.remove(1)
    assert journal.entries() == {}
