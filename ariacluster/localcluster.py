"""A whole cluster on one machine: a dispatcher process plus N agent processes.

Used by `manage.py runcluster` (what `make run` starts) and by the end-to-end tests, so both
exercise the same start-up path. It only starts processes and writes their config files; it does
not import the dispatcher's models, so it works before migrations ran.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it may hold a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


@dataclass
class LocalCluster:
    """Processes of a local cluster, with their config files under `data_dir`.

    `dispatcher_config` is merged into the generated `dispatcher.json`; `env` is added to every
    child's environment (e.g. DATABASE_URL, REDIS_URL).
    """

    data_dir: Path
    download_root: Path
    port: int = 8000
    host: str = "127.0.0.1"
    dispatcher_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    # An existing dispatcher.json to use instead of generating one in data_dir.
    existing_config: Path | None = None
    python: str = sys.executable
    dispatchers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.existing_config or self.data_dir / "dispatcher.json"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["ARIACLUSTER_CONFIG"] = str(self.config_path)
        env["ARIACLUSTER_DATA_DIR"] = str(self.data_dir)
        env["PYTHONUNBUFFERED"] = "1"
        # The agent must find aria2c from the wheel when none is on PATH.
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def write_dispatcher_config(self) -> None:
        config: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "log_level": "INFO",
            "database": {"type": "sqlite", "path": str(self.data_dir / "dispatcher.db")},
        }
        for key, value in self.dispatcher_config.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.config_path, json.dumps(config, indent=2) + "\n")

    def manage(self, *args: str, check: bool = True) -> str:
        """Run a manage.py command against this cluster's configuration; return stdout."""
        result = subprocess.run(
            [self.python, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout.strip()

    def _log(self, name: str) -> Any:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"{name}.log", "ab")  # the child process owns it

    def start_dispatcher(
        self,
        *,
        port: int | None = None,
        wait: float = 30.0,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `manage.py serve` and wait until it answers HTTP."""
        port = port or self.port
        env = self.child_env()
        env.update(extra_env or {})
        log = self._log(f"dispatcher-{port}")
        process = subprocess.Popen(
            [self.python, str(ROOT / "manage.py"), "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
        )
        self.dispatchers.append(process)
        wait_for_http(f"http://{self.host}:{port}/healthz", process, wait)
        return process

    def write_agent_config(
        self,
        name: str,
        join_key: str,
        *,
        max_tasks: int = 5,
        dispatcher_url: str | None = None,
        capabilities: dict[str, Any] | None = None,
        heartbeat_interval: float = 2.0,
        aria2: dict[str, Any] | None = None,
    ) -> Path:
        config = {
            "dispatcher": {
                "url": dispatcher_url or self.url,
                "api_key": join_key,
                "heartbeat_interval": heartbeat_interval,
            },
            "aria2": {
                "host": "127.0.0.1",
                "port": 0,
                "download_dir": str(self.download_root / name),
                "global_options": {},
                **(aria2 or {}),
            },
            "worker": {
                "name": name,
                "max_tasks": max_tasks,
                "capabilities": {
                    "supports_bt": True,
                    "supports_metalink": True,
                    "tags": {},
                    **(capabilities or {}),
                },
            },
            "log_level": "INFO",
        }
        path = self.data_dir / f"worker-{name}.json"
        write_private(path, json.dumps(config, indent=2) + "\n")
        return path

    def start_agent(self, name: str, config_path: Path) -> subprocess.Popen[bytes]:
        log = self._log(f"agent-{name}")
        process = subprocess.Popen(
            [self.python, "-m", "worker_agent", "--config", str(config_path)],
            cwd=ROOT,
            env=self.child_env(),
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
        )
        self.agents[name] = process
        return process

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child (agents first, so they can stop aria2c), then wait."""
        children = [*self.agents.values(), *self.dispatchers]
        for process in children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait until `url` answers at all (any HTTP status); fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} during start-up")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - our own loopback URL
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")
