"""Shared pieces of the benchmark suite (issue 7): results, percentiles, /proc sampling,
an nginx Range server, bare aria2c baselines, PostgreSQL scratch databases, clusters.

Every benchmark writes ``bench/results/<name>[-small].json`` with the machine, the date, the
exact command and the load average before and after, next to its figures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgres://postgres:test@127.0.0.1:5432/postgres"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- figures


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def ms_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds, rounded to 0.1 ms."""
    return {
        "n": len(seconds),
        "p50_ms": round(pct(seconds, 50) * 1000, 1),
        "p95_ms": round(pct(seconds, 95) * 1000, 1),
        "p99_ms": round(pct(seconds, 99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1) if seconds else float("nan"),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    aria2 = subprocess.run(["aria2c", "--version"], capture_output=True, text=True).stdout
    mem = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aria2c": aria2.splitlines()[0] if aria2 else "?",
    }


class Run:
    """One benchmark invocation: records the load average at start and end, writes the JSON."""

    def __init__(self, name: str, small: bool) -> None:
        self.name = name + ("-small" if small else "")
        self.started = datetime.now(UTC)
        self.load_start = loadavg()

    def write(self, figures: dict[str, Any]) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "date": self.started.isoformat(timespec="seconds"),
            "duration_s": round((datetime.now(UTC) - self.started).total_seconds(), 1),
            "command": " ".join(["python -m bench." + Path(sys.argv[0]).stem, *sys.argv[1:]]),
            "machine": machine(),
            "loadavg_start": self.load_start,
            "loadavg_end": loadavg(),
            **figures,
        }
        path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
        print(f"\nload average start {self.load_start}, end {payload['loadavg_end']}")
        print(f"wrote {path.relative_to(ROOT)}")
        return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text)
    return text


# ---------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class CpuMeter:
    """Cores a process used between start() and stop() (Δcpu / Δwall)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_seconds(pid)
        self.wall0 = time.monotonic()

    def cores(self) -> float:
        return round((cpu_seconds(self.pid) - self.cpu0) / (time.monotonic() - self.wall0), 3)


# ---------------------------------------------------------------------------------- servers


@contextmanager
def nginx(root: Path) -> Iterator[str]:
    """nginx (single process, no access log) serving ``root`` with Range on 127.0.0.1.

    Yields the base URL. Falls back to tests.support.rangeserver if nginx is not installed.
    """
    from ariacluster.localcluster import free_port, wait_for_http

    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        from tests.support.rangeserver import RangeServer

        with RangeServer(root) as server:
            yield f"http://127.0.0.1:{server.port}"
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        temps = " ".join(
            f"{kind}_temp_path {tmp}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;\n"
            f"  {temps}\n"
            f"  server {{ listen 127.0.0.1:{port}; root {root.resolve()}; location / {{ }} }} }}\n"
        )
        process = subprocess.Popen(
            [binary, "-p", tmp, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process, 10)  # type: ignore[arg-type]
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


def aria2c_fetch(urls: list[str], out: Path, concurrency: int) -> float:
    """Bare ``aria2c -i`` over ``urls`` into ``out`` with ``-j concurrency``; elapsed seconds.

    Same per-download defaults as the agent's aria2c (it passes none beyond dir and gid).
    """
    out.mkdir(parents=True, exist_ok=True)
    listing = out / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    began = time.monotonic()
    result = subprocess.run(
        [
            "aria2c",
            f"--input-file={listing}",
            f"--max-concurrent-downloads={concurrency}",
            f"--dir={out}",
            "--seed-time=0",
            "--no-netrc=true",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--quiet=true",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(f"aria2c failed ({result.returncode}): {result.stderr[-2000:]}")
    listing.unlink()
    return elapsed


def make_files(root: Path, prefix: str, count: int, size: int) -> dict[str, str]:
    """``count`` random files of ``size`` bytes; {name: sha256}."""
    from tests.support.rangeserver import make_random_file

    return {
        f"{prefix}-{i}.bin": make_random_file(root / f"{prefix}-{i}.bin", size, seed=f"{prefix}{i}")  # type: ignore[arg-type]
        for i in range(count)
    }


def verify_files(files: dict[str, Path], digests: dict[str, str]) -> int:
    """sha256 every file against its source digest; return the bytes verified."""
    from tests.support.rangeserver import sha256_of

    total = 0
    for name, path in files.items():
        got = sha256_of(path)
        if got != digests[name]:
            raise AssertionError(f"sha256 mismatch for {name}: {path}")
        total += path.stat().st_size
    return total


# ---------------------------------------------------------------------------------- databases


@contextmanager
def postgres_database() -> Iterator[str]:
    """A scratch PostgreSQL database for one benchmark, dropped afterwards; yields its URL."""
    from tests.support.e2e import scratch_postgres_database

    with scratch_postgres_database(PG_ADMIN_URL, "ariacluster_bench") as url:
        yield url


@contextmanager
def cluster(base: Path, *, database: str = "sqlite", **kwargs: Any) -> Iterator[Any]:
    """tests.support.e2e.running_cluster on SQLite or on a scratch PostgreSQL database.

    The in-memory channel layer (one dispatcher process) unless REDIS_URL is set.
    """
    from tests.support.e2e import running_cluster

    saved = os.environ.pop("DATABASE_URL", None)
    try:
        if database == "postgresql":
            os.environ["DATABASE_URL"] = PG_ADMIN_URL  # running_cluster makes its own database
        with running_cluster(base, **kwargs) as running:
            yield running
    finally:
        os.environ.pop("DATABASE_URL", None)
        if saved is not None:
            os.environ["DATABASE_URL"] = saved


def dispatcher_pid(running: Any) -> int:
    return int(running.local.dispatchers[0].pid)


def wait_all_done(api: Any, expected: int, timeout: float) -> dict[str, int]:
    """Poll /api/v1/status/ until ``expected`` tasks are completed or failed.

    Every 0.25 s: results are timed from the tasks' own ``finished_at``, so polling faster only
    adds load the system under test would not otherwise see.
    """
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = api.get("/api/v1/status/")["tasks"]
        if counts.get("completed", 0) + counts.get("failed", 0) >= expected:
            return counts
        time.sleep(0.25)
    raise AssertionError(f"not all {expected} tasks finished after {timeout} s: {counts}")


def all_tasks(api: Any, query: str = "") -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = api.get(f"/api/v1/tasks/?page_size=500&page={page}{query}")
        tasks += answer["results"]
        if not answer.get("next"):
            return tasks
        page += 1


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def http_get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


# ---------------------------------------------------------------------------------- profiles


class Profiler:
    """``py-spy record`` on a running process (``--profile``); summarises where time goes.

    Writes the collapsed stacks to ``bench/results/profiles/<name>.txt`` (kept only with
    BENCH_KEEP_PROFILES=1: they are large); ``summary()`` gives
    the functions with the largest inclusive share of the samples (idle threads excluded).
    """

    def __init__(self, pid: int, name: str) -> None:
        self.path = Path(tempfile.gettempdir()) / "bench-profiles" / f"{name}.txt"
        if os.environ.get("BENCH_KEEP_PROFILES"):
            self.path = RESULTS / "profiles" / f"{name}.txt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        self.process = subprocess.Popen(
            [
                str(spy),
                "record",
                "-p",
                str(pid),
                "--format",
                "raw",
                "-r",
                "50",
                "--nonblocking",
                "-o",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> list[tuple[str, float]]:
        import signal

        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        summary = self.summary()
        if not os.environ.get("BENCH_KEEP_PROFILES"):
            self.path.unlink(missing_ok=True)  # the summary goes into the JSON result
        return summary

    def summary(self, top: int = 80) -> list[tuple[str, float]]:
        """Inclusive % of busy samples per function; wrappers (threads, asgiref, ...) left out."""
        if not self.path.exists():
            return []
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if any(word in frames[-1] for word in IDLE_FRAMES):
                continue
            total += int(count)
            for frame in set(frames):
                func, _, where = frame.partition(" (")
                where = where.rsplit(":", 1)[0]
                where = where.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                if any(where.startswith(w) for w in WRAPPERS) or "<frozen" in where:
                    continue
                key = f"{func} ({where})"
                inclusive[key] = inclusive.get(key, 0) + int(count)
        ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * n / max(1, total), 1)) for name, n in ranked]


IDLE_FRAMES = ("wait (threading", "select (", "poll (", "epoll", "get (queue", "_wait_for_tstate")
WRAPPERS = (
    "/usr/lib",
    "threading",
    "concurrent",
    "asgiref",
    "daphne",
    "twisted",
    "django/core/handlers",
    "django/utils/deprecation",
    "whitenoise",
    "ariacluster/http.py",
    "ariacluster/asgi.py",
    "channels",
    "runpy",
)
