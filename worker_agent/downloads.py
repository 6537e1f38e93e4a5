"""Per-task operations on aria2: add, pause, resume, inspect, remove, and hash the result.

A task owns the folder ``<download_dir>/task-<id>/`` and the root GID ``task_gid(id, epoch)``.
Its *members* are the GIDs reachable from the root through ``followedBy`` plus any GID aria2 made
itself (magnet/torrent children, new after an aria2c restart) whose ``dir`` is the task folder.
A task is complete when every member without ``followedBy`` (a data leaf) is complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_agent.aria2_rpc import Aria2Refused, Aria2Rpc, gid_tree
from worker_agent.journal import Journal, JournalEntry

log = logging.getLogger(__name__)

_TASK_DIR = re.compile(r"^task-([0-9]+)$")
_STOPPED = frozenset({"complete", "error", "removed"})


class FileOutsideTask(RuntimeError):
    """A finished file resolves outside its task folder (symlink or ``out`` trickery)."""


@dataclass
class TaskView:
    """The aggregated aria2 state of one task's members."""

    status: str  # active | waiting | paused | complete | error | removed | missing
    members: list[str] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)
    total_length: int = 0
    completed_length: int = 0
    download_speed: int = 0
    upload_speed: int = 0
    connections: int = 0
    error_code: int | None = None
    error_message: str = ""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def owner_task_id(download_dir: Path, aria2_dir: str) -> int | None:
    """The task id whose folder is ``aria2_dir``, or None when it is not a task folder of ours."""
    path = Path(aria2_dir)
    if path.parent != download_dir:
        return None
    match = _TASK_DIR.match(path.name)
    return int(match.group(1)) if match else None


def looks_like_root_gid(gid: str, task_id: int) -> bool:
    """True for a GID the agent derived from ``task_id`` (any epoch)."""
    return len(gid) == 16 and gid.startswith(f"{task_id:012x}")


def hash_task_files(download_dir: Path, task_dir: Path, paths: list[str]) -> list[dict[str, Any]]:
    """``[{path, size, sha256}]`` with paths relative to ``download_dir``.

    Raises :class:`FileOutsideTask` if a file's real path is not inside ``task_dir``.
    """
    root = Path(os.path.realpath(download_dir))
    folder = Path(os.path.realpath(task_dir))
    result = []
    for raw in sorted(set(paths)):
        real = Path(os.path.realpath(raw))
        if not real.is_relative_to(folder) or real == folder:
            raise FileOutsideTask(f"{raw} is outside {task_dir}")
        digest = hashlib.sha256()
        with real.open("rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        result.append(
            {
                "path": real.relative_to(root).as_posix(),
                "size": real.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return result


class Downloads:
    """Task-level aria2 operations. Used from the agent's main loop only."""

    def __init__(self, rpc: Aria2Rpc, journal: Journal, download_dir: Path) -> None:
        self.rpc = rpc
        self.journal = journal
        self.download_dir = download_dir

    def task_dir(self, task_id: int) -> Path:
        return self.download_dir / f"task-{task_id}"

    def members(self, entry: JournalEntry, downloads: dict[str, dict[str, Any]]) -> list[str]:
        """The task's GIDs in ``downloads`` (see module docstring)."""
        found = gid_tree(entry.gid, downloads)
        folder = str(self.task_dir(entry.task_id))
        for gid, item in downloads.items():
            if gid in found or item.get("dir") != folder:
                continue
            if not looks_like_root_gid(gid, entry.task_id):
                found.append(gid)
        return found

    def view(self, entry: JournalEntry, downloads: dict[str, dict[str, Any]]) -> TaskView:
        """Aggregate the members' states into one :class:`TaskView`."""
        members = self.members(entry, downloads)
        if not members:
            return TaskView(status="missing")
        leaves = [gid for gid in members if not downloads[gid].get("followedBy")]
        items = [downloads[gid] for gid in members]
        leaf_items = [downloads[gid] for gid in leaves]
        view = TaskView(
            status="waiting",
            members=members,
            leaves=leaves,
            total_length=sum(_int(i.get("totalLength")) for i in leaf_items),
            completed_length=sum(_int(i.get("completedLength")) for i in leaf_items),
            download_speed=sum(_int(i.get("downloadSpeed")) for i in items),
            upload_speed=sum(_int(i.get("uploadSpeed")) for i in items),
            connections=sum(_int(i.get("connections")) for i in items),
        )
        statuses = {str(i.get("status")) for i in leaf_items}
        errored = [i for i in leaf_items if i.get("status") == "error"]
        if errored:
            view.status = "error"
            view.error_code = _int(errored[0].get("errorCode"))
            view.error_message = str(errored[0].get("errorMessage", ""))
        elif "removed" in statuses:
            view.status = "removed"
            view.error_code = 31
            view.error_message = "the download was removed from aria2 outside the agent"
        elif statuses == {"complete"}:
            view.status = "complete"
        else:
            all_statuses = {str(i.get("status")) for i in items}
            for status in ("active", "waiting", "paused"):
                if status in all_statuses:
                    view.status = status
                    break
        return view

    def add(self, entry: JournalEntry, *, paused: bool) -> None:
        """Journal the entry, then hand it to aria2 unless aria2 already has its GID.

        Raises OSError (task folder), :class:`Aria2Refused` or ``Aria2Unavailable``; the entry
        stays journaled in phase ``adding`` so a later resync can retry.
        """
        folder = self.task_dir(entry.task_id)
        folder.mkdir(parents=True, exist_ok=True)
        entry.phase = "adding"
        self.journal.write(entry)
        if self.rpc.tell_status(entry.gid, ["status"]) is None:
            options: dict[str, Any] = dict(entry.options)
            options.update({"gid": entry.gid, "dir": str(folder)})
            if paused:
                options["pause"] = "true"
            try:
                if entry.torrent:
                    self.rpc.add_torrent(entry.torrent, entry.uris, options)
                else:
                    self.rpc.add_uri(entry.uris, options)
            except Aria2Refused:
                # A lost answer to an addUri that did succeed looks like a refusal on retry.
                if self.rpc.tell_status(entry.gid, ["status"]) is None:
                    raise
        entry.phase = "added"
        self.journal.write(entry)
        log.info("task %s epoch %s added to aria2 as %s", entry.task_id, entry.epoch, entry.gid)

    def pause(self, gids: list[str], downloads: dict[str, dict[str, Any]]) -> None:
        for gid in gids:
            if downloads.get(gid, {}).get("status") in {"active", "waiting"}:
                self.rpc.force_pause(gid)

    def resume(self, gids: list[str], downloads: dict[str, dict[str, Any]]) -> None:
        for gid in gids:
            if downloads.get(gid, {}).get("status") == "paused":
                self.rpc.unpause(gid)

    def remove_gids(self, gids: list[str], *, wait: float = 3.0) -> None:
        """forceRemove ``gids``, wait until aria2 has stopped them, then drop their results."""
        for gid in gids:
            self.rpc.force_remove(gid)
        deadline = time.monotonic() + wait
        pending = list(gids)
        while pending and time.monotonic() < deadline:
            status = self.rpc.tell_status(pending[0], ["status"])
            if status is None or status.get("status") in _STOPPED:
                pending.pop(0)
            else:
                time.sleep(0.05)
        for gid in gids:
            self.rpc.remove_download_result(gid)

    def forget(self, entry: JournalEntry, *, delete_files: bool) -> None:
        """Remove every member from aria2, optionally delete the task folder, drop the entry."""
        downloads = self.rpc.poll().downloads
        self.remove_gids(self.members(entry, downloads) or [entry.gid])
        if delete_files:
            folder = self.task_dir(entry.task_id)
            if folder.parent == self.download_dir and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        self.journal.remove(entry.task_id)
        log.info(
            "task %s epoch %s forgotten%s",
            entry.task_id,
            entry.epoch,
            " with its files" if delete_files else "",
        )

    def finished_paths(self, leaves: list[str]) -> list[str]:
        """Absolute paths of the selected, real files of the data leaves."""
        paths = []
        for gid in leaves:
            for item in self.rpc.get_files(gid):
                path = str(item.get("path", ""))
                if not path or path.startswith("[METADATA]") or item.get("selected") == "false":
                    continue
                paths.append(path)
        return paths
