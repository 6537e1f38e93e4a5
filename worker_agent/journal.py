"""The agent's durable record of the tasks it holds: one JSON file per task in the state dir.

Contract: an entry is written (tmp file + fsync + rename + directory fsync) *before* the download
is handed to aria2, updated when the agent's view of the task changes, and deleted only once the
dispatcher has accepted a final report or told the agent to drop the task. After any restart the
journal, not aria2's session file, says what the agent holds.

``phase`` is the agent-side state machine::

    adding --add ok--> added --all data leaves complete + hashed--> completed --accepted-->
       |                  \\--aria2 error / removed elsewhere----> failed       (deleted, or
       +--bad options / aria2 refused----------------------------> failed        seeding --seeding
       +--cannot create the task folder--------------------------> released      stops--> deleted)
    any phase --dropped, cancelled or 409--> entry deleted (with the task folder)

``gids`` lists the GIDs ``aria2.addMetalink`` returned (one per file, no parent; the root
``gid`` is then only the task's name for reports). ``hold`` is the task's
``pause_for_selection``: its data downloads stay paused until files are chosen.
``seeding``: the data is complete and BitTorrent still uploads (kept after ``completed`` is
accepted, in phase ``seeding``, until aria2 stops seeding; the files are never deleted).

``started_reported`` records that the dispatcher accepted ``started``. ``completed``, ``failed``
and ``released`` entries keep their report (files or error) until the dispatcher accepts it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("adding", "added", "completed", "failed", "released", "seeding")
_NAME = re.compile(r"^task-([0-9]+)\.json$")


def task_gid(task_id: int, epoch: int) -> str:
    """The aria2 GID the agent gives a task's root download: 12 hex of id, 4 hex of epoch."""
    return f"{task_id:012x}{epoch % 65536:04x}"


@dataclass
class JournalEntry:
    """What the agent holds for one task (at one epoch)."""

    task_id: int
    epoch: int
    gid: str
    uris: list[str]
    options: dict[str, Any]
    kind: str = "http"
    state: str = "run"
    phase: str = "adding"
    started_reported: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    error_code: int | None = None
    error_message: str = ""
    torrent: str | None = None
    metalink: str | None = None
    gids: list[str] = field(default_factory=list)
    hold: bool = False
    seeding: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """``(task_id, epoch)``: what the dispatcher's reports are about."""
        return (self.task_id, self.epoch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        """Build an entry from its JSON form; raises ValueError on a malformed record."""
        try:
            entry = cls(
                task_id=int(data["task_id"]),
                epoch=int(data["epoch"]),
                gid=str(data["gid"]),
                uris=[str(u) for u in data.get("uris", [])],
                options=dict(data.get("options", {})),
                kind=str(data.get("kind", "http")),
                state=str(data.get("state", "run")),
                phase=str(data.get("phase", "adding")),
                started_reported=bool(data.get("started_reported", False)),
                files=list(data.get("files", [])),
                error_code=data.get("error_code"),
                error_message=str(data.get("error_message", "")),
                torrent=data.get("torrent"),
                metalink=data.get("metalink"),
                gids=[str(g) for g in data.get("gids", [])],
                hold=bool(data.get("hold", False)),
                seeding=bool(data.get("seeding", False)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed journal entry: {exc}") from exc
        if entry.phase not in PHASES:
            raise ValueError(f"unknown phase {entry.phase!r}")
        return entry


class Journal:
    """Directory of ``task-<id>.json`` files; at most one entry (one epoch) per task id."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, task_id: int) -> Path:
        return self.directory / f"task-{task_id}.json"

    def write(self, entry: JournalEntry, *, durable: bool = True) -> None:
        """Atomically replace the entry for ``entry.task_id``.

        Durable (the default): on return it survives a crash of the machine, not only of the
        process. ``durable=False`` skips both fsyncs; it is for changes the agent can re-derive
        if an OS crash loses them (``started_reported``: the report is resent, idempotently;
        ``adding`` → ``added``: the GID is deterministic, so reconciliation finds the download
        in aria2). Either way the rename keeps the file whole.
        """
        path = self._path(entry.task_id)
        tmp = path.with_name(f".{path.name}.tmp")
        data = json.dumps(asdict(entry), sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            self._fsync_dir()

    def remove(self, task_id: int) -> None:
        """Forget a task; missing entries are fine."""
        try:
            self._path(task_id).unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    def get(self, task_id: int) -> JournalEntry | None:
        """Return the entry for ``task_id`` or None (also for an unreadable file)."""
        path = self._path(task_id)
        try:
            return JournalEntry.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except ValueError:
            return None

    def entries(self) -> dict[int, JournalEntry]:
        """All readable entries by task id; corrupt files are skipped (they were never fsynced)."""
        result: dict[int, JournalEntry] = {}
        for path in sorted(self.directory.iterdir()):
            match = _NAME.match(path.name)
            if not match:
                continue
            entry = self.get(int(match.group(1)))
            if entry is not None:
                result[entry.task_id] = entry
        return result

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
