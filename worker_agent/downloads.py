"""Per-task operations on aria2: add, pause, resume, inspect, remove, and hash the result.

A task owns the folder ``<download_dir>/task-<id>/`` and the root GID ``task_gid(id, epoch)``.
Its *members* are the GIDs reachable from the root through ``followedBy`` plus any GID aria2 made
itself (magnet/torrent children, new after an aria2c restart) whose ``dir`` is the task folder.
A task is complete when every *data leaf* is complete: a member without ``followedBy`` that is
not the metadata download of a magnet / ``.torrent`` URL / Metalink URL (the root of such a task
only fetches the document; while it is the only leaf the task is "fetching metadata", never
complete). A BitTorrent leaf that is ``active`` with ``seeder == "true"`` has all its data.
An uploaded Metalink has no root at all: ``aria2.addMetalink`` returns one GID per file, kept in
the journal entry's ``gids`` (they are also found by their ``dir``).
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
from worker_agent.logcontext import with_task_log_context
from worker_agent.urlpolicy import UrlPolicy

log = logging.getLogger(__name__)

_TASK_DIR = re.compile(r"^task-([0-9]+)$")
_STOPPED = frozenset({"complete", "error", "removed"})
# Task kinds whose URIs point at a document aria2 follows (root GID = metadata download).
METADATA_KINDS = frozenset({"magnet", "torrent", "metalink"})
# Options aria2 changes on an active download without restarting it.
LIVE_OPTIONS = frozenset({"max-download-limit", "max-upload-limit"})


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
    data_leaves: list[str] = field(default_factory=list)
    phase: str = ""
    seeding: bool = False
    uploaded_length: int = 0


def has_metadata_root(entry: JournalEntry) -> bool:
    """True when the root GID downloads a document (magnet, .torrent or Metalink URL)."""
    return entry.kind in METADATA_KINDS and not entry.torrent and not entry.metalink


def wants_seeding(entry: JournalEntry) -> bool:
    """True when the task asked to seed (aria2c runs with seed-time=0 otherwise)."""
    try:
        return float(entry.options.get("seed-time", "0")) > 0
    except (TypeError, ValueError):
        return False


def _has_all_data(item: dict[str, Any]) -> bool:
    return item.get("status") == "complete" or (
        item.get("status") == "active" and item.get("seeder") == "true"
    )


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
        # Replaced by the dispatcher's policy at registration (docs/security.md).
        self.url_policy = UrlPolicy()

    def check_urls(self, entry: JournalEntry) -> None:
        """Check every URI and tracker of ``entry`` against the URL policy after resolving
        host names; this aria2c's own RPC port is always refused. Raises ``UrlDenied``."""
        policy = self.url_policy.with_denied_port(self.rpc.port)
        for uri in entry.uris:
            policy.check_resolved(uri)
        for tracker in str(entry.options.get("bt-tracker", "")).split(","):
            if tracker:
                policy.check_tracker(tracker)

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
        data = [g for g in leaves if not (has_metadata_root(entry) and g == entry.gid)]
        items = [downloads[gid] for gid in members]
        data_items = [downloads[gid] for gid in data]
        view = TaskView(
            status="waiting",
            members=members,
            leaves=leaves,
            data_leaves=data,
            total_length=sum(_int(i.get("totalLength")) for i in data_items),
            completed_length=sum(_int(i.get("completedLength")) for i in data_items),
            download_speed=sum(_int(i.get("downloadSpeed")) for i in items),
            upload_speed=sum(_int(i.get("uploadSpeed")) for i in items),
            connections=sum(_int(i.get("connections")) for i in items),
            uploaded_length=sum(_int(i.get("uploadLength")) for i in items),
        )
        leaf_items = [downloads[gid] for gid in leaves]
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
        elif data_items and all(_has_all_data(i) for i in data_items):
            view.status = "complete"
            # With seed-time 0 (the default) aria2 shows "seeder" for a moment before it stops.
            view.seeding = wants_seeding(entry) and any(
                i.get("status") == "active" for i in data_items
            )
            view.phase = "seeding" if view.seeding else ""
        else:
            all_statuses = {str(i.get("status")) for i in items}
            for status in ("active", "waiting", "paused"):
                if status in all_statuses:
                    view.status = status
                    break
            if not data_items:
                view.phase = "fetching metadata"
            elif entry.hold and all(i.get("status") == "paused" for i in data_items):
                view.phase = "awaiting selection"
        return view

    def startable(self, entry: JournalEntry, gids: list[str]) -> list[str]:
        """The GIDs to unpause: all but the data downloads held for a file selection."""
        if not entry.hold:
            return gids
        return [g for g in gids if has_metadata_root(entry) and g == entry.gid]

    def file_states(self, entry: JournalEntry, view: TaskView) -> list[dict[str, Any]]:
        """Per-file state of the data leaves: index (``select-file``'s), path relative to the
        task folder, size, completed bytes, selected."""
        answers = self.rpc.get_files_many(view.data_leaves)
        several = len(view.data_leaves) > 1
        folder = f"{self.task_dir(entry.task_id)}/"
        files: list[dict[str, Any]] = []
        for gid in view.data_leaves:
            for item in answers.get(gid, []):
                path = str(item.get("path", ""))
                if path.startswith("[METADATA]"):
                    continue
                files.append(
                    {
                        "index": len(files) + 1 if several else _int(item.get("index")),
                        "path": path[len(folder) :] if path.startswith(folder) else path,
                        "size": _int(item.get("length")),
                        "completed": _int(item.get("completedLength")),
                        "selected": item.get("selected") != "false",
                    }
                )
        return files

    @with_task_log_context
    def add(self, entry: JournalEntry, *, paused: bool) -> None:
        """Journal the entry, then hand it to aria2 unless aria2 already has it.

        Raises OSError (task folder), :class:`Aria2Refused` or ``Aria2Unavailable``; the entry
        stays journaled in phase ``adding`` so a later resync can retry.
        """
        folder = self.task_dir(entry.task_id)
        folder.mkdir(parents=True, exist_ok=True)
        entry.phase = "adding"
        self.journal.write(entry)
        if entry.metalink:
            self._add_metalink(entry, folder, paused=paused)
        elif self.rpc.tell_status(entry.gid, ["status"]) is None:
            options: dict[str, Any] = dict(entry.options)
            options.update({"gid": entry.gid, "dir": str(folder)})
            if paused or (entry.hold and not has_metadata_root(entry)):
                options["pause"] = "true"
            if entry.hold and has_metadata_root(entry):
                # Children made from the fetched document start paused until files are chosen.
                options["pause-metadata"] = "true"
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
        self.journal.write(entry, durable=False)
        log.info("task %s epoch %s added to aria2 as %s", entry.task_id, entry.epoch, entry.gid)

    def _add_metalink(self, entry: JournalEntry, folder: Path, *, paused: bool) -> None:
        """addMetalink unless aria2 already holds downloads in the task folder."""
        snapshot = self.rpc.poll().downloads
        present = [g for g, item in snapshot.items() if item.get("dir") == str(folder)]
        if present:
            entry.gids = sorted(set(entry.gids) | set(present))
            return
        options: dict[str, Any] = dict(entry.options)
        options["dir"] = str(folder)
        if paused or entry.hold:
            options["pause"] = "true"
        assert entry.metalink is not None
        entry.gids = self.rpc.add_metalink(entry.metalink, options)

    @with_task_log_context
    def change_options(self, entry: JournalEntry, options: dict[str, Any], *, hold: bool) -> None:
        """Apply a task's new options (already validated) and selection hold to aria2.

        Speed limits change live; any other change is set with ``aria2.changeOption``, which
        restarts an active download keeping its data (a paused one just takes it). An uploaded
        Metalink cannot change its file set in place: its downloads are re-added with the new
        options into the same folder, resuming from the control files.
        """
        previous = dict(entry.options)
        changed = {k: v for k, v in options.items() if previous.get(k) != v}
        for key in set(previous) - set(options):
            if key in LIVE_OPTIONS:
                changed[key] = "0"
        released = entry.hold and not hold
        entry.options, entry.hold = dict(options), hold
        self.journal.write(entry)
        if not changed and not released:
            return
        snapshot = self.rpc.poll().downloads
        members = self.members(entry, snapshot)
        if entry.metalink and set(changed) - LIVE_OPTIONS:
            self.remove_gids(members)
            entry.gids = []
            self.add(entry, paused=entry.state == "pause")
            return
        for gid in members:
            if changed and snapshot[gid].get("status") not in _STOPPED:
                self.rpc.change_option(gid, changed)
        log.info("task %s options changed: %s", entry.task_id, sorted(changed))
        if released and entry.state == "run":
            self.resume(self.startable(entry, members), self.rpc.poll().downloads)

    def pause(self, gids: list[str], downloads: dict[str, dict[str, Any]]) -> None:
        for gid in gids:
            if downloads.get(gid, {}).get("status") in {"active", "waiting"}:
                self.rpc.force_pause(gid)

    def resume(self, gids: list[str], downloads: dict[str, dict[str, Any]]) -> None:
        for gid in gids:
            if downloads.get(gid, {}).get("status") == "paused":
                self.rpc.unpause(gid)

    def remove_gids(
        self,
        gids: list[str],
        *,
        wait: float = 3.0,
        downloads: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """forceRemove ``gids``, wait until aria2 has stopped them, then drop their results.

        With ``downloads`` (a fresh snapshot), GIDs already stopped there skip the forceRemove
        and the wait: a finished download only needs its result dropped.
        """
        stopped = {gid for gid in gids if (downloads or {}).get(gid, {}).get("status") in _STOPPED}
        pending = [gid for gid in gids if gid not in stopped]
        for gid in pending:
            self.rpc.force_remove(gid)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            status = self.rpc.tell_status(pending[0], ["status"])
            if status is None or status.get("status") in _STOPPED:
                pending.pop(0)
            else:
                time.sleep(0.05)
        for gid in gids:
            self.rpc.remove_download_result(gid)

    @with_task_log_context
    def forget(self, entry: JournalEntry, *, delete_files: bool) -> None:
        """Remove every member from aria2, optionally delete the task folder, drop the entry."""
        downloads = self.rpc.poll().downloads
        self.remove_gids(self.members(entry, downloads) or [entry.gid], downloads=downloads)
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

    @with_task_log_context
    def forget_seeding(self, entry: JournalEntry) -> None:
        """Seeding ended: drop the results from aria2 and the journal, keep the files."""
        self.remove_gids(self.members(entry, self.rpc.poll().downloads) or [entry.gid])
        self.journal.remove(entry.task_id)
        log.info("task %s stopped seeding", entry.task_id)

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
