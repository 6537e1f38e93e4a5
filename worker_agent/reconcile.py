"""Bring aria2 in line with the journal and, when given, the dispatcher's authoritative list.

Contract of :func:`reconcile`:

* with ``assignments`` (a heartbeat answer or websocket ``sync``): journal entries not listed are
  forgotten with their task folder; an entry listed at another epoch is replaced, keeping the
  folder so aria2 can resume from its control file; listed tasks the agent lacks are journaled
  then added; each task's ``state`` (run/pause) is applied;
* with ``assignments=None`` (startup, aria2c restart): only the journal is the truth;
* always: aria2 downloads in one of our task folders that belong to no held task (or to another
  epoch) are removed (the folder is kept: it may hold data the dispatcher already accepted);
  a GID aria2 already has is never added again, so no errorCode 11/12 duplicates;
* ``fenced`` (no recent heartbeat): everything is paused whatever its state says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from worker_agent.aria2_rpc import Aria2Refused
from worker_agent.downloads import Downloads, looks_like_root_gid, owner_task_id
from worker_agent.journal import JournalEntry, task_gid
from worker_agent.logcontext import with_task_log_context
from worker_agent.options import OptionError, validate_task_options
from worker_agent.urlpolicy import URL_DENIED_ERROR_CODE, UrlDenied

log = logging.getLogger(__name__)

TaskKey = tuple[int, int]


@dataclass(frozen=True)
class Assignment:
    """One task the dispatcher wants this worker to hold (protocol ``Assignment``)."""

    task_id: int
    epoch: int
    uris: list[str]
    options: dict[str, Any]
    kind: str = "http"
    state: str = "run"
    torrent: str | None = None
    metalink: str | None = None
    pause_for_selection: bool = False

    @classmethod
    def parse(cls, raw: Any) -> Assignment:
        """Decode an Assignment object; raises ValueError naming the bad field."""
        if not isinstance(raw, dict):
            raise ValueError("assignment must be an object")
        for key in ("task_id", "epoch"):
            if isinstance(raw.get(key), bool) or not isinstance(raw.get(key), int):
                raise ValueError(f"assignment {key} must be an integer")
        uris = raw.get("uris", [])
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise ValueError("assignment uris must be a list of strings")
        options = raw.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError("assignment options must be an object")
        state = raw.get("state", "run")
        if state not in {"run", "pause"}:
            raise ValueError(f"assignment state must be 'run' or 'pause', got {state!r}")
        torrent = raw.get("torrent")
        metalink = raw.get("metalink")
        return cls(
            task_id=raw["task_id"],
            epoch=raw["epoch"],
            uris=list(uris),
            options=dict(options),
            kind=str(raw.get("kind", "http")),
            state=state,
            torrent=torrent if isinstance(torrent, str) else None,
            metalink=metalink if isinstance(metalink, str) else None,
            pause_for_selection=raw.get("pause_for_selection") is True,
        )

    @property
    def key(self) -> TaskKey:
        return (self.task_id, self.epoch)


@dataclass
class ReconcileOutcome:
    """Task ids touched by one reconciliation, for logs and tests."""

    added: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)


@with_task_log_context
def add_assignment(downloads: Downloads, assignment: Assignment, *, fenced: bool) -> JournalEntry:
    """Journal and add one new assignment; bad input becomes a ``failed``/``released`` entry.

    Raises ``Aria2Unavailable`` (entry left in ``adding`` for the next resync).
    """
    entry = JournalEntry(
        task_id=assignment.task_id,
        epoch=assignment.epoch,
        gid=task_gid(assignment.task_id, assignment.epoch),
        uris=assignment.uris,
        options=dict(assignment.options),
        kind=assignment.kind,
        state=assignment.state,
        torrent=assignment.torrent,
        metalink=assignment.metalink,
        hold=assignment.pause_for_selection,
    )
    try:
        entry.options = dict(validate_task_options(assignment.options))
        if not entry.uris and not entry.torrent and not entry.metalink:
            raise OptionError("uris", "no URI to download")
    except OptionError as exc:
        entry.phase, entry.error_message = "failed", str(exc)
        downloads.journal.write(entry)
        return entry
    try:
        downloads.check_urls(entry)
    except UrlDenied as exc:
        # Checked again here, after DNS: the dispatcher fails the task without retrying.
        entry.phase, entry.error_message = "failed", str(exc)
        entry.error_code = URL_DENIED_ERROR_CODE
        downloads.journal.write(entry)
        log.warning("task %s refused: %s", entry.task_id, exc)
        return entry
    try:
        downloads.add(entry, paused=fenced or entry.state == "pause")
    except OSError as exc:
        entry.phase, entry.error_message = "released", f"cannot create the task folder: {exc}"
        downloads.journal.write(entry)
    except Aria2Refused as exc:
        entry.phase, entry.error_message = "failed", f"aria2 refused the download: {exc.message}"
        downloads.journal.write(entry)
    return entry


def _drop_unlisted(
    downloads: Downloads, wanted: dict[int, Assignment], outcome: ReconcileOutcome
) -> None:
    for task_id, entry in downloads.journal.entries().items():
        listed = wanted.get(task_id)
        if entry.phase == "seeding":
            # Completed and accepted; the agent keeps it until aria2 stops seeding.
            continue
        if entry.phase == "completed":
            # A completion report is pending: the dispatcher may already have accepted it (the
            # answer was lost in a crash), so it is no longer listed. The report sender resolves
            # it: 200 keeps the files, 409 drops them. Dropping here could delete accepted data.
            continue
        if listed is None:
            downloads.forget(entry, delete_files=True)
            outcome.dropped.append(task_id)
        elif listed.epoch != entry.epoch:
            downloads.forget(entry, delete_files=False)
            outcome.replaced.append(task_id)
        else:
            if listed.state != entry.state:
                entry.state = listed.state
                downloads.journal.write(entry)
            if entry.phase == "added" and (
                listed.options != entry.options or listed.pause_for_selection != entry.hold
            ):
                # A lost "options" push: the authoritative list carries the new options.
                apply_options(downloads, entry, listed.options, hold=listed.pause_for_selection)


@with_task_log_context
def apply_options(downloads: Downloads, entry: JournalEntry, options: Any, *, hold: bool) -> None:
    """Validate the dispatcher's new options for a held task again, then apply them.

    Raises ``Aria2Unavailable``; a refused option or aria2 refusal is logged and skipped.
    """
    try:
        clean = dict(validate_task_options(options if isinstance(options, dict) else {}))
    except OptionError as exc:
        log.error("task %s: new options refused: %s", entry.task_id, exc)
        return
    try:
        downloads.change_options(entry, clean, hold=hold)
    except (OSError, Aria2Refused) as exc:
        log.error("task %s: options not applied: %s", entry.task_id, exc)


def _remove_orphans(
    downloads: Downloads,
    entries: dict[int, JournalEntry],
    snapshot: dict[str, dict[str, Any]],
    outcome: ReconcileOutcome,
) -> None:
    orphans = []
    for gid, item in snapshot.items():
        task_id = owner_task_id(downloads.download_dir, str(item.get("dir", "")))
        if task_id is None:
            continue
        entry = entries.get(task_id)
        if entry is None or (looks_like_root_gid(gid, task_id) and gid != entry.gid):
            orphans.append(gid)
    if orphans:
        log.warning("removing aria2 downloads no held task owns: %s", orphans)
        downloads.remove_gids(orphans)
        outcome.orphans_removed.extend(orphans)


def reconcile(
    downloads: Downloads,
    assignments: list[Assignment] | None,
    *,
    fenced: bool,
    finished: set[TaskKey],
) -> ReconcileOutcome:
    """Apply the module contract once. ``finished`` keys are never re-added (late messages)."""
    outcome = ReconcileOutcome()
    wanted: dict[int, Assignment] = {}
    if assignments is not None:
        wanted = {a.task_id: a for a in assignments if a.key not in finished}
        _drop_unlisted(downloads, wanted, outcome)
    entries = downloads.journal.entries()
    snapshot = downloads.rpc.poll().downloads
    _remove_orphans(downloads, entries, snapshot, outcome)
    if outcome.orphans_removed:
        snapshot = downloads.rpc.poll().downloads

    for task_id, assignment in wanted.items():
        if task_id not in entries:
            entry = add_assignment(downloads, assignment, fenced=fenced)
            (outcome.added if entry.phase == "added" else outcome.refused).append(task_id)
    for task_id, entry in entries.items():
        if entry.phase not in {"adding", "added"}:
            continue
        view = downloads.view(entry, snapshot)
        paused = fenced or entry.state == "pause"
        if view.status == "missing":
            try:
                downloads.add(entry, paused=paused)
                outcome.added.append(task_id)
            except (OSError, Aria2Refused) as exc:
                log.error(
                    "task %s could not be re-added: %s", task_id, exc, extra={"task_id": task_id}
                )
            continue
        if entry.phase == "adding":
            entry.phase = "added"
            downloads.journal.write(entry)
        if paused:
            downloads.pause(view.members, snapshot)
        else:
            downloads.resume(downloads.startable(entry, view.members), snapshot)
    return outcome
