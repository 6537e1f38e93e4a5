"""Sends the task reports the journal says are owed, in order, until the dispatcher accepts them.

Owed reports, per journal entry:

* ``started`` once the download is in aria2 (phase ``added``, or ``completed`` / aria2-``failed``
  before it was reported);
* then the final one: ``completed`` (files + sha256, and whether it is still seeding),
  ``failed`` (aria2 errorCode or null) or ``released``.

After the dispatcher accepts a final report: ``completed`` keeps the files and removes the
download results from aria2 (while seeding, it keeps the entry in phase ``seeding`` instead);
``failed``/``released`` also delete the task folder. A 409 (or 404) means the lease is gone:
the download and its folder are dropped. Network trouble postpones everything with backoff;
every report is idempotent per epoch so resending is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from worker_agent.dispatcher_client import (
    DispatcherClient,
    DispatcherRejected,
    DispatcherUnavailable,
    StaleLease,
    Unauthorized,
    backoff_delays,
)
from worker_agent.downloads import Downloads
from worker_agent.journal import JournalEntry
from worker_agent.logcontext import with_task_log_context
from worker_agent.urlpolicy import URL_DENIED_ERROR_CODE

log = logging.getLogger(__name__)

TaskKey = tuple[int, int]


def owes_started(entry: JournalEntry) -> bool:
    """True when ``started`` must be sent before anything else for this entry."""
    if entry.started_reported:
        return False
    return entry.phase in {"added", "completed"} or (
        entry.phase == "failed"
        and entry.error_code is not None
        and entry.error_code != URL_DENIED_ERROR_CODE
    )


def final_report(entry: JournalEntry) -> tuple[str, dict[str, Any]] | None:
    """The (event, body) of the final report an entry owes, if any."""
    if entry.phase == "completed":
        body: dict[str, Any] = {"epoch": entry.epoch, "files": entry.files}
        if entry.seeding:
            body["seeding"] = True
        return "completed", body
    if entry.phase == "failed":
        return "failed", {
            "epoch": entry.epoch,
            "error_code": entry.error_code,
            "error_message": entry.error_message,
        }
    if entry.phase == "released":
        return "released", {"epoch": entry.epoch, "reason": entry.error_message}
    return None


class ReportSender:
    """Owns ``next_attempt`` (monotonic time) for the agent loop's scheduling."""

    def __init__(
        self, client: DispatcherClient, downloads: Downloads, finished: set[TaskKey]
    ) -> None:
        self.client = client
        self.downloads = downloads
        self.finished = finished
        self.next_attempt = 0.0
        self._delay = backoff_delays(1.0, 30.0)

    def send_due(self, now: float) -> None:
        """Send every owed report if it is time; on network trouble retry later with backoff."""
        if now < self.next_attempt or self.client.token is None:
            return
        self.next_attempt = float("inf")
        for entry in self.downloads.journal.entries().values():
            try:
                self._send(entry)
            except DispatcherUnavailable as exc:
                log.warning(
                    "report for task %s postponed: %s",
                    entry.task_id,
                    exc,
                    extra={"task_id": entry.task_id},
                )
                self.next_attempt = now + self._delay()
                return
            except Unauthorized:
                self.next_attempt = now + 1.0
                return
        self._delay = backoff_delays(1.0, 30.0)

    @with_task_log_context
    def _send(self, entry: JournalEntry) -> None:
        try:
            if owes_started(entry):
                self.client.task_report(
                    entry.task_id, "started", {"epoch": entry.epoch, "gid": entry.gid}
                )
                entry.started_reported = True
                self.downloads.journal.write(entry, durable=False)
            report = final_report(entry)
            if report is None:
                return
            event, body = report
            answer = self.client.task_report(entry.task_id, event, body)
            log.info("task %s %s accepted: %s", entry.task_id, event, answer)
            self.finished.add(entry.key)
            if event == "completed" and entry.seeding:
                # Keep uploading (and reporting upload totals) until aria2 stops seeding.
                entry.phase = "seeding"
                self.downloads.journal.write(entry)
                return
            self.downloads.forget(entry, delete_files=event != "completed")
        except StaleLease:
            log.warning("task %s epoch %s: lease lost (409); dropping it", *entry.key)
            self._drop(entry, delete_files=True)
        except Unauthorized:
            raise
        except DispatcherRejected as exc:
            if exc.status == 404:
                log.warning("task %s unknown to the dispatcher; dropping it", entry.task_id)
                self._drop(entry, delete_files=True)
            elif final_report(entry) is not None:
                # Our report is malformed: resending cannot help. Keep the files for a human.
                log.error("task %s report refused: %s; forgetting it", entry.task_id, exc)
                self._drop(entry, delete_files=False)
            else:
                log.error("task %s started report refused: %s", entry.task_id, exc)
                entry.started_reported = True
                self.downloads.journal.write(entry)

    def _drop(self, entry: JournalEntry, *, delete_files: bool) -> None:
        self.finished.add(entry.key)
        self.downloads.forget(entry, delete_files=delete_files)
