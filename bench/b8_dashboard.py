"""B8 — dashboard fan-out: 200 active tasks reporting every second, 20 connected browsers.

One dispatcher process (``manage.py serve``, SQLite and the in-memory channel layer by default;
``--database postgresql`` adds Redis when REDIS_URL is set), 20 simulated workers
(bench/simagent.py, real agent protocol over HTTP) holding 10 tasks each and posting one
progress batch per second, and 20 dashboard clients: each logs in as a staff user (a real
session cookie), loads the task list (its first page, 50 rows), opens ``/ws/dashboard/`` like
live.js and, like live.js, re-reads the rows of its page it was told about
(``GET /tasks/rows/?ids=...`` with HX-Request) at most every 500 ms.

Measured per client and per task: from the moment a simulated agent sent the progress report
that changed the task to the moment the client received the notice naming it ("notice"), and
to the moment the client had the re-rendered rows in hand ("rows", what a person sees; only
for the rows on its page, as in a browser). Also the
share of progress reports whose change reached every client, the dispatcher's CPU, and the
HTTP latency of the progress reports under this load.

Target: update delivered ≤ 1 s after the agent's report (p95); dispatcher CPU reported.

Usage: python -m bench.b8_dashboard [--small] [--clients 20] [--workers 20] [--seconds 30]
       [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import websocket

from bench.b4_control_plane import Fleet
from bench.common import CpuMeter, Run, cluster, dispatcher_pid, ms_summary, rss_bytes, table

REFRESH_INTERVAL = 0.5  # live.js MIN_INTERVAL

SESSION_SCRIPT = """
from django.contrib.auth import get_user_model, HASH_SESSION_KEY, SESSION_KEY, BACKEND_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user("bench{n}", password=None, is_staff=True)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


class SendLog:
    """When each task's progress was sent (wall clock), shared by the fleet and the clients.

    The fleet's Stats keeps only the latest send per task; this keeps the recent history so a
    late notice is matched with the oldest change it covers, not with a newer one.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: dict[int, list[float]] = defaultdict(list)

    def record(self, sent_at: dict[int, float]) -> None:
        with self.lock:
            for task_id, when in sent_at.items():
                times = self.history[task_id]
                if not times or times[-1] != when:
                    times.append(when)
                    if len(times) > 30:
                        del times[:-30]

    def oldest_unseen(self, task_id: int, seen_until: float, now: float) -> float | None:
        with self.lock:
            times = [t for t in self.history.get(task_id, ()) if seen_until < t <= now]
        return min(times) if times else None

    def sends_between(self, start: float, end: float) -> dict[int, list[float]]:
        with self.lock:
            return {
                task_id: [t for t in times if start <= t < end]
                for task_id, times in self.history.items()
            }


class DashboardClient:
    """One browser: the websocket plus live.js's coalesced row re-reads."""

    def __init__(self, base_url: str, session: str, sends: SendLog) -> None:
        self.base_url = base_url
        self.session = session
        self.sends = sends
        self.recording = False
        self.notice_delays: list[float] = []
        self.rows_delays: list[float] = []
        self.rows_latency: list[float] = []
        self.seen_until: dict[int, float] = {}
        self.notices: dict[int, list[float]] = defaultdict(list)  # task id -> notice times
        self.pending: dict[int, float] = {}  # task id -> oldest change waiting for a re-read
        self.errors = 0
        self.stopped = threading.Event()
        self.wake = threading.Event()
        self.socket: websocket.WebSocket | None = None
        self.page: set[int] = set()  # task ids on this client's page of the task list
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._refresh, daemon=True),
        ]

    def start(self) -> None:
        request = urllib.request.Request(
            f"{self.base_url}/tasks/", headers={"Cookie": f"sessionid={self.session}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = response.read().decode()
        self.page = {int(found) for found in re.findall(r'id="task-([0-9]+)"', page)}
        if not self.page:
            raise RuntimeError("the task list page shows no task rows")
        ws_url = self.base_url.replace("http://", "ws://") + "/ws/dashboard/"
        self.socket = websocket.create_connection(
            ws_url,
            cookie=f"sessionid={self.session}",
            origin=self.base_url,
            timeout=10,
        )
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self.socket is not None:
            self.socket.close()
        for thread in self.threads:
            thread.join(5)

    def _read(self) -> None:
        assert self.socket is not None
        while not self.stopped.is_set():
            try:
                raw = self.socket.recv()
            except Exception:  # noqa: BLE001 - closed at stop, or a real failure
                if not self.stopped.is_set():
                    self.errors += 1
                return
            if not raw:  # the socket closed
                if not self.stopped.is_set():
                    self.errors += 1
                return
            now = time.time()
            message = json.loads(raw)
            if message.get("type") != "tasks":
                continue
            for task_id in message["ids"]:
                oldest = self.sends.oldest_unseen(task_id, self.seen_until.get(task_id, 0.0), now)
                self.seen_until[task_id] = now
                self.notices[task_id].append(now)
                if oldest is None:
                    continue
                if self.recording:
                    self.notice_delays.append(now - oldest)
                if task_id in self.page:
                    self.pending.setdefault(task_id, oldest)
            self.wake.set()

    def _refresh(self) -> None:
        last = 0.0
        while not self.stopped.is_set():
            self.wake.wait(1.0)
            self.wake.clear()
            if not self.pending:
                continue
            time.sleep(max(0.0, last + REFRESH_INTERVAL - time.monotonic()))
            batch, self.pending = self.pending, {}
            last = time.monotonic()
            ids = ",".join(str(i) for i in sorted(batch))
            request = urllib.request.Request(
                f"{self.base_url}/tasks/rows/?ids={ids}",
                headers={"HX-Request": "true", "Cookie": f"sessionid={self.session}"},
            )
            began = time.time()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    html = response.read().decode()
            except Exception:  # noqa: BLE001 - counted; the next notice retries
                self.errors += 1
                continue
            done = time.time()
            if self.recording:
                self.rows_latency.append(done - began)
                self.rows_delays += [done - oldest for oldest in batch.values()]
            missing = [i for i in batch if f'id="task-{i}"' not in html]
            if missing:
                self.errors += 1


def run(
    *, clients: int, workers: int, seconds: float, warmup: float, database: str
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        cluster(
            Path(tmp),
            database=database,
            workers=0,
            config={"worker_management": {"heartbeat_interval": 10, "heartbeat_timeout": 30}},
        ) as running,
    ):
        pid = dispatcher_pid(running)
        api = running.api
        active = workers * 10
        api.post(
            "/api/v1/tasks/batch/",
            {"tasks": [{"url": f"http://127.0.0.1:9/b8/{i}.bin"} for i in range(active)]},
        )
        sessions = [
            running.local.manage("shell", "-c", SESSION_SCRIPT.format(n=i)).splitlines()[-1]
            for i in range(clients)
        ]
        fleet = Fleet(running.local.port, running.join_key)
        sends = SendLog()
        browsers = [DashboardClient(running.local.url, s, sends) for s in sessions]
        for browser in browsers:
            browser.start()
        fleet.grow(workers, complete=False)
        copier_stop = threading.Event()

        def copy_sends() -> None:
            while not copier_stop.is_set():
                sends.record(dict(fleet.stats.sent_at))
                time.sleep(0.01)

        copier = threading.Thread(target=copy_sends, daemon=True)
        copier.start()
        try:
            time.sleep(warmup)
            held = sum(len(w.tasks) for w in fleet.workers)
            fleet.stats.latency, fleet.stats.errors = {}, {}
            fleet.stats.recording = True
            for browser in browsers:
                browser.recording = True
            meter = CpuMeter(pid)
            began = time.time()
            rss = 0
            while time.time() - began < seconds:
                time.sleep(1)
                rss = max(rss, rss_bytes(pid))
            ended = time.time()
            for browser in browsers:
                browser.recording = False
            fleet.stats.recording = False
            cores = meter.cores()
            time.sleep(2)  # let notices for the last reports arrive (they are not counted)
        finally:
            copier_stop.set()
            for browser in browsers:
                browser.stop()
            fleet.stop()
        # Coverage: of the changes sent during the window, how many each client heard of. A
        # notice names a task, not a change: any notice for the task received after the change
        # was sent makes the client re-read the row, and it then shows that change (or newer).
        window = sends.sends_between(began, ended)
        expected = sum(len(times) for times in window.values())
        heard = [
            sum(
                1
                for task_id, times in window.items()
                for t in times
                if any(n >= t for n in b.notices.get(task_id, []))
            )
            for b in browsers
        ]
    notice = [d for b in browsers for d in b.notice_delays]
    rows = [d for b in browsers for d in b.rows_delays]
    return {
        "clients": clients,
        "simulated_workers": workers,
        "active_tasks_held": held,
        "database": database,
        "seconds": seconds,
        "progress_reports": ms_summary(fleet.stats.latency.get("progress", [])),
        "report_to_notice": ms_summary(notice),
        "report_to_rows": ms_summary(rows),
        "rows_request": ms_summary([d for b in browsers for d in b.rows_latency]),
        "rows_on_each_page": min(len(b.page) for b in browsers),
        "notices_per_client_per_s": round(len(notice) / clients / seconds, 1),
        "changes_heard_by_every_client_pct": round(100 * min(heard) / expected, 2)
        if expected
        else 0.0,
        "client_errors": sum(b.errors for b in browsers),
        "agent_errors": dict(fleet.stats.errors),
        "dispatcher_cores": cores,
        "dispatcher_rss_mb": round(rss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5 clients, 5 workers, 10 s")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="simulated, 10 tasks each")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    bench = Run("b8_dashboard" + ("" if args.database == "sqlite" else "-postgresql"), args.small)
    figures = run(
        clients=args.clients or (5 if args.small else 20),
        workers=args.workers or (5 if args.small else 20),
        seconds=args.seconds or (10 if args.small else 30),
        warmup=4 if args.small else 8,
        database=args.database,
    )
    notice, rows = figures["report_to_notice"], figures["report_to_rows"]
    figures["target_p95_ms"] = 1000
    figures["target_met"] = bool(rows and rows.get("p95_ms", 1e9) <= 1000)
    print(
        f"\nB8: {figures['clients']} dashboard clients, {figures['active_tasks_held']} active "
        f"tasks reporting every second ({figures['database']})"
    )
    table(
        ["measure", "p50 ms", "p95 ms", "p99 ms", "max ms", "n"],
        [
            [name, s.get("p50_ms"), s.get("p95_ms"), s.get("p99_ms"), s.get("max_ms"), s.get("n")]
            for name, s in [
                ("agent report -> notice at client", notice),
                ("agent report -> rows re-read", rows),
                ("rows request", figures["rows_request"]),
                ("progress report (agent HTTP)", figures["progress_reports"]),
            ]
        ],
    )
    print(
        f"changes heard by every client: {figures['changes_heard_by_every_client_pct']}%, "
        f"notices/client/s {figures['notices_per_client_per_s']}, "
        f"dispatcher {figures['dispatcher_cores']} cores, {figures['dispatcher_rss_mb']} MB, "
        f"client errors {figures['client_errors']}, agent errors {figures['agent_errors']}"
    )
    print(f"target p95 <= 1000 ms (report -> rows): {'met' if figures['target_met'] else 'MISSED'}")
    bench.write(figures)


if __name__ == "__main__":
    main()
