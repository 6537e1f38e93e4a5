"""Simulated agents speaking the real agent protocol (docs/protocol.md) over HTTP — no aria2c.

Each simulated worker has its own keep-alive HTTP/1.1 connection (a minimal asyncio client, so
one load-generator process can drive hundreds of workers on a small machine): it registers with a
join key, heartbeats every ``heartbeat_interval`` (the answer is its authoritative task list; it
reports ``started`` for tasks new to it), posts one progress batch for all its tasks every second,
and at each heartbeat reports one task completed (fake file, sha256 of nothing) so the
dispatcher places a new one. Used by B4, B6 and B8.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class HttpConn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, JSON in and out."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        for attempt in (1, 2):
            try:
                return await self._request(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        first = await self.reader.readline()
        if not first:
            raise ConnectionError("server closed the keep-alive connection")
        status = int(first.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = (await self.reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            name = name.lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if chunked:
            raw = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                raw += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            raw = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, json.loads(raw) if raw else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Stats:
    """Latencies (s) per kind of call, and how far behind its 1 s schedule each worker ran."""

    recording: bool = False
    latency: dict[str, list[float]] = field(default_factory=dict)
    lag: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds behind)
    errors: dict[str, int] = field(default_factory=dict)
    # task id -> wall time the latest progress for it was sent (B8 delivery delay)
    sent_at: dict[int, float] = field(default_factory=dict)

    def add(self, kind: str, seconds: float) -> None:
        if self.recording:
            self.latency.setdefault(kind, []).append(seconds)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SimWorker:
    def __init__(
        self, name: str, port: int, join_key: str, stats: Stats, max_tasks: int = 10
    ) -> None:
        self.name = name
        self.conn = HttpConn(port)
        self.join_key = join_key
        self.stats = stats
        self.max_tasks = max_tasks
        self.token = ""
        self.heartbeat_interval = 10.0
        self.tasks: dict[int, dict[str, Any]] = {}  # task id -> {epoch, done}
        self.stopped = False

    async def call(self, kind: str, path: str, body: Any) -> tuple[int, Any]:
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        status, answer = await self.conn.request("POST", "/api/agent/v1" + path, body, headers)
        self.stats.add(kind, time.monotonic() - began)
        if status >= 400:
            self.stats.error(f"{kind} {status}")
        return status, answer

    async def register(self) -> None:
        body = {
            "name": self.name,
            "hostname": "sim",
            "max_tasks": self.max_tasks,
            "free_disk": 10**12,
            "agent_version": "sim",
            "aria2_version": "sim",
        }
        began = time.monotonic()
        status, answer = await self.conn.request(
            "POST", "/api/agent/v1/register", body, {"X-Join-Key": self.join_key}
        )
        self.stats.add("register", time.monotonic() - began)
        assert status == 200, (status, answer)
        self.token = answer["token"]
        self.heartbeat_interval = float(answer["heartbeat_interval"])

    async def heartbeat(self) -> None:
        body = {
            "slots_used": len(self.tasks),
            "download_speed": 1_000_000 * len(self.tasks),
            "free_disk": 10**12,
            "tasks": [{"task_id": t, "epoch": v["epoch"]} for t, v in self.tasks.items()],
        }
        status, answer = await self.call("heartbeat", "/heartbeat", body)
        if status != 200:
            return
        listed = {a["task_id"]: a["epoch"] for a in answer["tasks"]}
        self.tasks = {t: v for t, v in self.tasks.items() if listed.get(t) == v["epoch"]}
        for task_id, epoch in listed.items():
            if task_id not in self.tasks:
                self.tasks[task_id] = {"epoch": epoch, "done": 0}
                await self.call("started", f"/tasks/{task_id}/started", {"epoch": epoch})

    async def progress(self) -> None:
        items = []
        for task_id, held in self.tasks.items():
            held["done"] += 1_000_000
            items.append(
                {
                    "task_id": task_id,
                    "epoch": held["epoch"],
                    "status": "active",
                    "total_length": 10**9,
                    "completed_length": min(held["done"], 10**9 - 1),
                    "download_speed": 1_000_000,
                    "connections": 1,
                }
            )
        if not items:
            return
        now = time.time()
        for item in items:
            self.stats.sent_at[item["task_id"]] = now
        status, answer = await self.call("progress", "/progress", {"tasks": items})
        if status == 200:
            for task_id in answer.get("stale", []):
                self.tasks.pop(task_id, None)

    async def complete_one(self) -> None:
        if not self.tasks:
            return
        task_id = min(self.tasks)
        held = self.tasks.pop(task_id)
        body = {
            "epoch": held["epoch"],
            "files": [{"path": f"task-{task_id}/f.bin", "size": 0, "sha256": EMPTY_SHA256}],
        }
        await self.call("completed", f"/tasks/{task_id}/completed", body)

    async def run(self, *, complete: bool = True) -> None:
        """Register, then heartbeat/progress/complete on schedule until ``stopped``."""
        await asyncio.sleep(random.random())  # spread the fleet over the second
        await self.register()
        await self.heartbeat()
        loop = asyncio.get_running_loop()
        next_progress = loop.time() + 1.0
        next_heartbeat = loop.time() + (
            1.0 if len(self.tasks) < self.max_tasks else self.heartbeat_interval * random.random()
        )
        while not self.stopped:
            delay = next_progress - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif self.stats.recording:
                self.stats.lag.append((time.monotonic(), -delay))
            try:
                await self.progress()
                if loop.time() >= next_heartbeat:
                    # Under-filled: ask again in 1 s (a real agent gets the push on its websocket).
                    short = len(self.tasks) < self.max_tasks - 1
                    next_heartbeat = loop.time() + (1.0 if short else self.heartbeat_interval)
                    if complete:
                        await self.complete_one()
                    await self.heartbeat()
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.stats.error("connection")
            except Exception as exc:  # noqa: BLE001 - count it, keep the worker going
                self.stats.error(type(exc).__name__)
            next_progress = max(next_progress + 1.0, loop.time() - 5.0)
        self.conn.close()
