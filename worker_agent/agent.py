"""The agent's main loop: one thread owns aria2 RPC, the journal and all dispatcher reports.

Startup: start (or attach to) aria2c, resync it with the journal while *fenced* (everything
paused), register with the join key (retrying with backoff until the dispatcher answers), open the
websocket, heartbeat at once. Then, until stopped, each turn of the loop:

1. handles websocket messages (sync / assign / cancel / pause / resume / options) as they arrive;
2. restarts a dead aria2c and resyncs (also when ``getSessionInfo`` shows a new session);
3. heartbeats every ``heartbeat_interval`` and reconciles against the answer; fences (pauses
   everything) when no heartbeat has succeeded for ``heartbeat_timeout``;
4. polls aria2 (``system.multicall``) every 0.3 s while tasks run, 2 s otherwise;
5. sends queued task reports (see :mod:`worker_agent.reports`) and one progress batch per second.

The loop sleeps on the message queue until the next deadline, so it never busy-loops.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from worker_agent import __version__
from worker_agent.aria2_events import EVENT as ARIA2_EVENT
from worker_agent.aria2_events import Aria2Events, websocket_url
from worker_agent.aria2_rpc import Aria2Rpc, Aria2Unavailable
from worker_agent.config import AgentConfig
from worker_agent.dispatcher_client import (
    CommandStream,
    DispatcherClient,
    DispatcherError,
    DispatcherRejected,
    DispatcherUnavailable,
    Unauthorized,
    backoff_delays,
)
from worker_agent.downloads import Downloads, TaskView, hash_task_files
from worker_agent.journal import Journal
from worker_agent.reconcile import (
    Assignment,
    TaskKey,
    add_assignment,
    apply_options,
    reconcile,
)
from worker_agent.reports import ReportSender
from worker_agent.supervisor import Aria2Supervisor
from worker_agent.urlpolicy import PolicyError, UrlPolicy

log = logging.getLogger(__name__)

ACTIVE_POLL = 0.3
# Fence (pause everything) at this fraction of the lease: before the dispatcher re-places work.
FENCE_FRACTION = 0.8
IDLE_POLL = 2.0
# Byte counts of a task's file list are re-sent at most this often (its shape at once).
FILES_INTERVAL = 3.0
_STOP = {"type": "_stop"}


class Agent:
    """One worker agent. ``run()`` blocks until :meth:`request_stop` is called."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.journal = Journal(config.state_dir / "journal")
        self.supervisor = Aria2Supervisor(config) if config.aria2_spawn else None
        self.rpc = Aria2Rpc(
            config.aria2_host,
            config.aria2_port,
            config.aria2_secret,
            rpc_path=config.aria2_rpc_path,
        )
        self.downloads = Downloads(self.rpc, self.journal, config.download_dir)
        self.client = DispatcherClient(config.dispatcher_url, timeout=5.0)
        self.stream: CommandStream | None = None
        # aria2's own notifications wake the loop when a download starts, stops or completes.
        self.aria2_events = Aria2Events(
            lambda: websocket_url(config.aria2_host, self.rpc.port, config.aria2_rpc_path),
            self.messages,
        )
        self.finished: set[TaskKey] = set()
        self.reports = ReportSender(self.client, self.downloads, self.finished)
        self.fenced = True
        self.worker_id: int | None = None
        self.heartbeat_interval = config.heartbeat_interval
        self.heartbeat_timeout = config.heartbeat_timeout or 3 * config.heartbeat_interval
        self.progress_interval = 1.0
        self.last_heartbeat_ok = time.monotonic()
        self.next_heartbeat = self.next_poll = self.next_progress = 0.0
        self.session_id: str | None = None
        self.views: dict[int, TaskView] = {}
        # Last file list sent per task, and when: it is sent only when it changed.
        self.sent_files: dict[TaskKey, tuple[list[dict[str, Any]], float]] = {}
        self.hashing: dict[TaskKey, Future[list[dict[str, Any]]]] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run()`` to return soon; safe from signal handlers and other threads."""
        self.stop_event.set()
        self.messages.put(_STOP)

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        self.config.download_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_aria2()
            self.aria2_events.start()
            self._resync(None)
            if not self._register():
                return 0
            self.stream = CommandStream(
                self.client.websocket_url(), lambda: self.client.token, self.messages
            )
            self.stream.start()
            while not self.stop_event.is_set():
                self._turn()
        finally:
            self._shutdown()
        return 0

    def _start_aria2(self) -> None:
        if self.supervisor is not None:
            self.supervisor.start()
            self.rpc.reconnect(self.supervisor.port, self.supervisor.secret)
        self.session_id = self.rpc.session_id()
        log.info("aria2 %s ready (session %s)", self.rpc.get_version(), self.session_id)

    def _shutdown(self) -> None:
        if self.stream is not None:
            self.stream.stop()
        self.aria2_events.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.supervisor is not None:
            self.supervisor.stop()
        log.info("agent stopped")

    def _register(self) -> bool:
        """Register until the dispatcher accepts; False if stopped first."""
        delay = backoff_delays(0.5, 30.0)
        while not self.stop_event.is_set():
            try:
                answer = self.client.register(self.config.api_key, self._register_body())
            except Unauthorized:
                log.error("the dispatcher refused the join key (dispatcher.api_key)")
            except DispatcherError as exc:
                log.warning("register failed: %s", exc)
            except Aria2Unavailable as exc:
                log.warning("aria2 not answering during register: %s", exc)
                self._check_aria2()
            else:
                self.worker_id = answer.get("worker_id")
                self.heartbeat_interval = float(
                    answer.get("heartbeat_interval") or self.heartbeat_interval
                )
                self.heartbeat_timeout = float(
                    self.config.heartbeat_timeout
                    or answer.get("heartbeat_timeout")
                    or 3 * self.heartbeat_interval
                )
                self.progress_interval = max(1.0, float(answer.get("progress_interval") or 1.0))
                self._adopt_url_policy(answer.get("url_policy"))
                self.next_heartbeat = 0.0
                log.info("registered as %s (worker id %s)", self.config.name, self.worker_id)
                return True
            self.stop_event.wait(delay())
        return False

    def _adopt_url_policy(self, raw: Any) -> None:
        """Enforce the dispatcher's URL policy; keep the current one if it sent none or junk."""
        if not isinstance(raw, dict):
            return
        try:
            self.downloads.url_policy = UrlPolicy.from_dict(raw)
        except PolicyError as exc:
            log.error("the dispatcher's url_policy is invalid (%s); keeping the current one", exc)

    def _register_body(self) -> dict[str, Any]:
        caps = self.config.capabilities
        return {
            "name": self.config.name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "agent_version": __version__,
            "aria2_version": self.rpc.get_version(),
            "max_tasks": self.config.max_tasks,
            "free_disk": self._free_disk(),
            "capabilities": {
                "disk_space": caps.disk_space,
                "bandwidth": caps.bandwidth,
                "supports_bt": caps.supports_bt,
                "supports_metalink": caps.supports_metalink,
                "tags": dict(caps.tags),
            },
        }

    def _free_disk(self) -> int:
        return int(shutil.disk_usage(self.config.download_dir).free)

    # -- the loop ----------------------------------------------------------------------------

    def _turn(self) -> None:
        now = time.monotonic()
        deadline = min(self.next_heartbeat, self.next_poll, self.reports.next_attempt)
        try:
            message = self.messages.get(timeout=min(1.0, max(0.02, deadline - now)))
        except queue.Empty:
            message = None
        try:
            while message is not None and not self.stop_event.is_set():
                self._handle(message)
                message = self.messages.get_nowait() if not self.messages.empty() else None
            if self.stop_event.is_set():
                return
            self._check_aria2()
            now = time.monotonic()
            if now >= self.next_heartbeat:
                self._heartbeat(now)
            self._check_fence(now)
            if now >= self.next_poll:
                self._poll(now)
            self._collect_hashes()
            self.reports.send_due(time.monotonic())
            if now >= self.next_progress:
                self._send_progress(now)
        except Aria2Unavailable as exc:
            log.warning("aria2 not answering: %s", exc)
        except DispatcherError as exc:
            log.warning("dispatcher: %s", exc)

    def _check_aria2(self) -> None:
        if self.supervisor is not None and self.supervisor.ensure_running():
            self.rpc.reconnect(self.supervisor.port, self.supervisor.secret)
            self.session_id = self.rpc.session_id()
            log.warning("aria2c restarted (session %s); resyncing", self.session_id)
            self._resync(None)

    def _resync(self, assignments: list[Assignment] | None) -> None:
        outcome = reconcile(self.downloads, assignments, fenced=self.fenced, finished=self.finished)
        if outcome.added or outcome.dropped or outcome.replaced or outcome.refused:
            log.info("reconciled: %s", outcome)
        self.next_poll = self.reports.next_attempt = 0.0

    def _heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.heartbeat_interval
        entries = self.journal.entries()
        speed_down = sum(v.download_speed for v in self.views.values())
        speed_up = sum(v.upload_speed for v in self.views.values())
        body = {
            "slots_used": sum(1 for e in entries.values() if e.phase in {"adding", "added"}),
            "download_speed": speed_down,
            "upload_speed": speed_up,
            "free_disk": self._free_disk(),
            "tasks": [{"task_id": e.task_id, "epoch": e.epoch} for e in entries.values()],
        }
        try:
            answer = self.client.heartbeat(body)
        except Unauthorized:
            log.warning("worker token refused; registering again")
            self._register()
            return
        except DispatcherUnavailable as exc:
            log.warning("heartbeat failed: %s", exc)
            self.next_heartbeat = now + min(self.heartbeat_interval, 2.0)
            return
        # Count from when the request left, never later than the dispatcher's own record of it,
        # so the agent fences itself before the dispatcher can expire the lease.
        self.last_heartbeat_ok = now
        if self.fenced:
            log.info("heartbeat succeeded: leases renewed, resuming what the dispatcher lists")
        self.fenced = False
        self._resync(self._parse_assignments(answer.get("tasks", [])))

    def _check_fence(self, now: float) -> None:
        if self.fenced or now - self.last_heartbeat_ok <= FENCE_FRACTION * self.heartbeat_timeout:
            return
        log.warning("no heartbeat for %.0f s: pausing every download", self.heartbeat_timeout)
        self.fenced = True
        snapshot = self.rpc.poll().downloads
        for entry in self.journal.entries().values():
            self.downloads.pause(self.downloads.members(entry, snapshot), snapshot)

    @staticmethod
    def _parse_assignments(raw: Any) -> list[Assignment]:
        if not isinstance(raw, list):
            raise DispatcherRejected(200, {"error": "tasks must be a list"})
        return [Assignment.parse(item) for item in raw]

    # -- websocket commands ------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        try:
            if kind == "_connected":
                self.next_heartbeat = 0.0
            elif kind == ARIA2_EVENT:
                self.next_poll = 0.0
            elif kind == "_hashed":
                pass  # the loop collects finished hashes every turn
            elif kind == "sync":
                self._resync(self._parse_assignments(message.get("tasks", [])))
            elif kind == "assign":
                self._assign(Assignment.parse(message.get("task")))
            elif kind in {"cancel", "pause", "resume"}:
                self._command(str(kind), int(message["task_id"]), int(message["epoch"]))
            elif kind == "options":
                self._options(message)
            elif kind != "_stop":
                log.debug("ignoring websocket message %r", kind)
        except (ValueError, KeyError, TypeError, DispatcherRejected) as exc:
            log.error("bad %s message from the dispatcher: %s", kind, exc)

    def _assign(self, assignment: Assignment) -> None:
        if assignment.key in self.finished:
            return
        held = self.journal.get(assignment.task_id)
        if held is not None and held.epoch == assignment.epoch:
            return
        if held is not None:
            self.downloads.forget(held, delete_files=False)
        add_assignment(self.downloads, assignment, fenced=self.fenced)
        self.next_poll = self.reports.next_attempt = 0.0

    def _command(self, kind: str, task_id: int, epoch: int) -> None:
        held = self.journal.get(task_id)
        if kind == "cancel":
            self.finished.add((task_id, epoch))
            if held is not None and epoch >= held.epoch:
                self.finished.add((task_id, held.epoch))
                self.downloads.forget(held, delete_files=True)
                self.hashing.pop((task_id, held.epoch), None)
            return
        if held is None or held.epoch != epoch:
            return
        held.state = "pause" if kind == "pause" else "run"
        self.journal.write(held)
        snapshot = self.rpc.poll().downloads
        members = self.downloads.members(held, snapshot)
        if held.state == "pause":
            self.downloads.pause(members, snapshot)
        elif not self.fenced:
            self.downloads.resume(self.downloads.startable(held, members), snapshot)
        self.next_poll = 0.0

    def _options(self, message: dict[str, Any]) -> None:
        held = self.journal.get(int(message["task_id"]))
        if held is None or held.epoch != int(message["epoch"]) or held.phase != "added":
            return
        hold = message.get("pause_for_selection") is True
        apply_options(self.downloads, held, message.get("options"), hold=hold)
        self.next_poll = 0.0

    # -- polling, completion, progress -------------------------------------------------------

    def _poll(self, now: float) -> None:
        self.next_poll = now + IDLE_POLL
        result = self.rpc.poll()
        if self.session_id is not None and result.session_id != self.session_id:
            log.warning("aria2 session changed (restarted elsewhere); resyncing")
            self.session_id = result.session_id
            self._resync(None)
            result = self.rpc.poll()
        self.session_id = result.session_id
        if self.supervisor is not None:
            self.supervisor.note_healthy()
        self.views = {}
        for entry in self.journal.entries().values():
            if entry.phase not in {"added", "seeding"}:
                continue
            view = self.downloads.view(entry, result.downloads)
            self.views[entry.task_id] = view
            if entry.phase == "seeding":
                continue
            if view.status in {"active", "waiting"}:
                self.next_poll = now + ACTIVE_POLL
            if view.status == "complete" and entry.key not in self.hashing:
                paths = self.downloads.finished_paths(view.data_leaves)
                folder = self.downloads.task_dir(entry.task_id)
                future = self.executor.submit(
                    hash_task_files, self.config.download_dir, folder, paths
                )
                future.add_done_callback(lambda _: self.messages.put({"type": "_hashed"}))
                self.hashing[entry.key] = future
                self.next_poll = now + ACTIVE_POLL
            elif view.status in {"error", "removed"}:
                entry.phase = "failed"
                entry.error_code, entry.error_message = view.error_code, view.error_message
                self.journal.write(entry)
                self.reports.next_attempt = 0.0
                log.info(
                    "task %s failed in aria2: %s",
                    entry.task_id,
                    view.error_message,
                    extra={"task_id": entry.task_id},
                )
            elif view.status == "missing":
                self.downloads.add(entry, paused=self.fenced or entry.state == "pause")

    def _collect_hashes(self) -> None:
        for key, future in list(self.hashing.items()):
            if not future.done():
                continue
            del self.hashing[key]
            entry = self.journal.get(key[0])
            if entry is None or entry.key != key or entry.phase != "added":
                continue
            try:
                entry.files = future.result()
                entry.phase = "completed"
                view = self.views.get(entry.task_id)
                entry.seeding = view is not None and view.seeding
            except Exception as exc:  # noqa: BLE001 - any hashing failure fails the task
                entry.phase, entry.error_code = "failed", None
                entry.error_message = f"cannot verify the downloaded files: {exc}"
            self.journal.write(entry)
            self.reports.next_attempt = 0.0

    def _send_progress(self, now: float) -> None:
        items = []
        entries = self.journal.entries()
        files_sent: dict[TaskKey, tuple[list[dict[str, Any]], float]] = {}
        for task_id, view in self.views.items():
            entry = entries.get(task_id)
            if entry is None or entry.phase not in {"added", "seeding"}:
                continue
            item: dict[str, Any] = {
                "task_id": task_id,
                "epoch": entry.epoch,
                "status": view.status,
                "total_length": view.total_length,
                "completed_length": view.completed_length,
                "download_speed": view.download_speed,
                "upload_speed": view.upload_speed,
                "connections": view.connections,
                "gid": entry.gid,
                "phase": view.phase,
                "seeding": view.seeding,
                "uploaded_length": view.uploaded_length,
            }
            if entry.phase == "added":
                files = self._changed_files(entry.key, entry, view, now)
                if files is not None:
                    item["files"] = files
                    files_sent[entry.key] = (files, now)
            items.append(item)
        if not items or self.client.token is None:
            return
        self.next_progress = now + self.progress_interval
        try:
            answer = self.client.progress(items)
        except DispatcherUnavailable as exc:
            log.debug("progress not sent: %s", exc)
            return
        held = {e.key for e in entries.values()}
        self.sent_files = {k: v for k, v in self.sent_files.items() if k in held}
        self.sent_files.update(files_sent)
        sent = {item["task_id"]: item["epoch"] for item in items}
        for task_id, view in self.views.items():
            entry = entries.get(task_id)
            if entry is not None and entry.phase == "seeding" and not view.seeding:
                self.downloads.forget_seeding(entry)
        for task_id in answer.get("stale", []) or []:
            entry = entries.get(task_id)
            if entry is not None and sent.get(task_id) == entry.epoch:
                if entry.phase == "seeding":
                    self.downloads.forget_seeding(entry)
                    continue
                log.info(
                    "task %s epoch %s is stale; dropping it",
                    task_id,
                    entry.epoch,
                    extra={"task_id": task_id},
                )
                self.finished.add(entry.key)
                self.downloads.forget(entry, delete_files=True)

    def _changed_files(
        self, key: TaskKey, entry: Any, view: TaskView, now: float
    ) -> list[dict[str, Any]] | None:
        """The task's file list if worth sending: its shape changed, or its byte counts did
        and the last send is a few seconds old."""
        if not view.data_leaves:
            return None
        files = self.downloads.file_states(entry, view)
        last, when = self.sent_files.get(key, ([], 0.0))
        if files == last:
            return None
        shape = [(f["index"], f["path"], f["size"], f["selected"]) for f in files]
        last_shape = [(f["index"], f["path"], f["size"], f["selected"]) for f in last]
        if shape == last_shape and now - when < FILES_INTERVAL:
            return None
        return files
