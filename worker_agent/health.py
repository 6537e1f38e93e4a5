"""``python -m worker_agent --check``: is the agent on this machine healthy?

For container health checks and supervisors. Healthy means:

- the state dir (journal, aria2 session, RPC secret) exists, is a directory only its owner can
  enter (0700, as the agent creates it) and is writable, and its journal is readable;
- the agent's aria2c answers ``aria2.getVersion`` over RPC: a spawned aria2c on the port the
  supervisor recorded in ``<state_dir>/aria2.port`` with the secret of ``aria2.conf``; an attached
  one (``aria2.spawn: false``) on the configured host, port and secret.

A healthy agent's process is not checked separately: a spawned aria2c stops with its agent
(``--stop-with-process``), so an answering aria2c implies a live agent.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from worker_agent.aria2_rpc import Aria2Refused, Aria2Rpc, Aria2Unavailable
from worker_agent.config import AgentConfig
from worker_agent.journal import Journal


def _state_dir_problems(state_dir: Path) -> list[str]:
    try:
        info = state_dir.stat()
    except OSError as exc:
        return [f"state dir {state_dir} is missing ({exc.strerror}); has the agent started?"]
    if not stat.S_ISDIR(info.st_mode):
        return [f"state dir {state_dir} is not a directory"]
    problems = []
    if info.st_mode & 0o077:
        problems.append(
            f"state dir {state_dir} is accessible by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}, expected 700)"
        )
    if not os.access(state_dir, os.W_OK | os.X_OK):
        problems.append(f"state dir {state_dir} is not writable by this user")
    journal = state_dir / "journal"
    if journal.exists():
        try:
            Journal(journal).entries()
        except (OSError, ValueError) as exc:
            problems.append(f"journal {journal} is unreadable: {exc}")
    return problems


def _rpc_target(config: AgentConfig) -> tuple[str, int, str] | str:
    """(host, port, secret) of the agent's aria2c, or why it cannot be known."""
    if not config.aria2_spawn:
        return config.aria2_host, config.aria2_port, config.aria2_secret
    port_file = config.state_dir / "aria2.port"
    conf_file = config.state_dir / "aria2.conf"
    try:
        port = int(port_file.read_text().strip())
        conf = conf_file.read_text()
    except (OSError, ValueError) as exc:
        return f"aria2c RPC address unknown ({exc}); has the agent started aria2c?"
    secret = ""
    for line in conf.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "rpc-secret":
            secret = value.strip()
    return "127.0.0.1", port, secret


def agent_health(config: AgentConfig, *, timeout: float = 3.0) -> list[str]:
    """Every reason the agent described by `config` is unhealthy; empty when it is healthy."""
    problems = _state_dir_problems(config.state_dir)
    target = _rpc_target(config)
    if isinstance(target, str):
        return [*problems, target]
    host, port, secret = target
    rpc = Aria2Rpc(host, port, secret, rpc_path=config.aria2_rpc_path, timeout=timeout)
    try:
        rpc.call("aria2.getVersion", retries=0)
    except Aria2Unavailable as exc:
        problems.append(f"aria2c does not answer RPC on {host}:{port}: {exc}")
    except Aria2Refused as exc:
        problems.append(f"aria2c on {host}:{port} refused the RPC call: {exc}")
    return problems
