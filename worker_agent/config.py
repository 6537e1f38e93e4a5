"""Agent configuration: the original ``config/worker.json`` schema plus a few agent keys.

Schema (every key optional unless noted; unknown keys are logged and ignored)::

    dispatcher: {url, heartbeat_interval, api_key}
    aria2:      {host, port, rpc_secret, rpc_path, download_dir, global_options{},
                 spawn (default true), aria2c_path}
    worker:     {name, max_tasks, capabilities{disk_space, bandwidth, supports_bt,
                 supports_metalink, tags{}}}
    agent:      {state_dir (default <download_dir>/.agent), heartbeat_timeout}
    log_level, log_file (rotating, besides stdout), log_format (plain | json)

Precedence: file < environment (``ARIACLUSTER_*``) < command-line flags. Relative paths are
resolved against the current directory. A bad value raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})

# Global aria2c options the agent owns: letting config change them would break RPC, the
# session/journal contract, or let a download run commands.
_FORBIDDEN_GLOBAL = frozenset(
    {
        "dir",
        "log",
        "input-file",
        "save-session",
        "save-session-interval",
        "conf-path",
        "enable-rpc",
        "daemon",
        "stop-with-process",
        "max-download-result",
        "allow-overwrite",
        "auto-file-renaming",
        "deferred-input",
        "no-conf",
        "gid",
        "pause",
    }
)
_FORBIDDEN_GLOBAL_PREFIXES = ("rpc-", "on-download-", "on-bt-")
_OPTION_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

# Environment variable -> dotted config key.
ENV_OVERRIDES: dict[str, str] = {
    "ARIACLUSTER_JOIN_KEY": "dispatcher.api_key",
    "ARIACLUSTER_DISPATCHER_URL": "dispatcher.url",
    "ARIACLUSTER_WORKER_NAME": "worker.name",
    "ARIACLUSTER_DOWNLOAD_DIR": "aria2.download_dir",
    "ARIACLUSTER_MAX_TASKS": "worker.max_tasks",
    "ARIACLUSTER_STATE_DIR": "agent.state_dir",
    "ARIACLUSTER_ARIA2C": "aria2.aria2c_path",
    "ARIACLUSTER_LOG_LEVEL": "log_level",
    "ARIACLUSTER_WORKER_LOG_FILE": "log_file",
    "ARIACLUSTER_LOG_FORMAT": "log_format",
}


# Every key of worker.json, per section ("" is the top level); docs/configuration.md lists them.
KNOWN_KEYS: dict[str, set[str]] = {
    "": {"dispatcher", "aria2", "worker", "agent", "log_level", "log_file", "log_format"},
    "dispatcher": {"url", "heartbeat_interval", "api_key"},
    "aria2": {
        "host",
        "port",
        "rpc_secret",
        "rpc_path",
        "download_dir",
        "global_options",
        "spawn",
        "aria2c_path",
    },
    "worker": {"name", "max_tasks", "capabilities"},
    "agent": {"state_dir", "heartbeat_timeout"},
}


class ConfigError(ValueError):
    """The configuration is invalid; ``key`` is the dotted name of the bad entry."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Capabilities:
    """What the worker advertises at registration."""

    disk_space: int = 0
    bandwidth: int = 0
    supports_bt: bool = True
    supports_metalink: bool = True
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    """The validated configuration; paths are absolute."""

    dispatcher_url: str
    api_key: str
    heartbeat_interval: float
    heartbeat_timeout: float | None
    aria2_host: str
    aria2_port: int
    aria2_secret: str
    aria2_rpc_path: str
    aria2_spawn: bool
    aria2c_path: str | None
    download_dir: Path
    global_options: dict[str, str]
    name: str
    max_tasks: int
    capabilities: Capabilities
    state_dir: Path
    log_level: str
    log_file: Path | None = None
    log_format: str = "plain"


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, "expected an object")
    return value


def _str(data: Mapping[str, Any], key: str, dotted: str, default: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(dotted, f"expected a string, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, dotted: str, default: int, low: int, high: int) -> int:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(dotted, f"expected an integer from {low} to {high}, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, dotted: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(dotted, f"expected a positive number, got {value!r}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, dotted: str, default: bool) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(dotted, f"expected true or false, got {value!r}")
    return value


def _warn_unknown(data: Mapping[str, Any], prefix: str, known: set[str]) -> None:
    for key in data:
        if key not in known:
            log.warning("config %s%s is not a known key; ignored", prefix, key)


def _validate_global_options(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("aria2.global_options", "expected an object")
    options: dict[str, str] = {}
    for name, value in raw.items():
        dotted = f"aria2.global_options.{name}"
        if not isinstance(name, str) or not _OPTION_NAME.match(name):
            raise ConfigError(dotted, "not a valid aria2 option name")
        if name in _FORBIDDEN_GLOBAL or name.startswith(_FORBIDDEN_GLOBAL_PREFIXES):
            raise ConfigError(dotted, "is managed by the agent and cannot be set")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
            raise ConfigError(dotted, "expected a string without control characters")
        options[name] = value
    return options


def _validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("dispatcher.url", f"expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _validate_aria2_host(host: str) -> str:
    bare = re.sub(r"^https?://", "", host).rstrip("/")
    if bare not in LOOPBACK_HOSTS:
        raise ConfigError("aria2.host", f"aria2 RPC must stay on loopback, got {host!r}")
    return "[::1]" if bare in {"::1", "[::1]"} else bare


def parse_config(data: Mapping[str, Any]) -> AgentConfig:
    """Validate a decoded worker.json (after overrides) into an :class:`AgentConfig`."""
    _warn_unknown(data, "", KNOWN_KEYS[""])
    disp = _section(data, "dispatcher")
    aria2 = _section(data, "aria2")
    worker = _section(data, "worker")
    agent = _section(data, "agent")
    caps = _section(worker, "capabilities") if "capabilities" in worker else {}
    sections = {"dispatcher": disp, "aria2": aria2, "worker": worker, "agent": agent}
    for prefix, section in sections.items():
        _warn_unknown(section, f"{prefix}.", KNOWN_KEYS[prefix])

    tags = caps.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ConfigError("worker.capabilities.tags", "expected an object of strings")
    capabilities = Capabilities(
        disk_space=_int(caps, "disk_space", "worker.capabilities.disk_space", 0, 0, 2**62),
        bandwidth=_int(caps, "bandwidth", "worker.capabilities.bandwidth", 0, 0, 2**62),
        supports_bt=_bool(caps, "supports_bt", "worker.capabilities.supports_bt", True),
        supports_metalink=_bool(
            caps, "supports_metalink", "worker.capabilities.supports_metalink", True
        ),
        tags=dict(tags),
    )

    download_dir_raw = _str(aria2, "download_dir", "aria2.download_dir", "downloads")
    if not download_dir_raw:
        raise ConfigError("aria2.download_dir", "must not be empty")
    download_dir = Path(download_dir_raw).expanduser().absolute()
    state_raw = _str(agent, "state_dir", "agent.state_dir", "")
    state_dir = Path(state_raw).expanduser().absolute() if state_raw else download_dir / ".agent"

    name = _str(worker, "name", "worker.name", socket.gethostname())
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", name):
        raise ConfigError("worker.name", f"expected letters, digits, '.', '_' or '-', got {name!r}")
    rpc_path = _str(aria2, "rpc_path", "aria2.rpc_path", "/jsonrpc")
    if not rpc_path.startswith("/"):
        raise ConfigError("aria2.rpc_path", "must start with '/'")
    log_level = _str(data, "log_level", "log_level", "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError("log_level", f"expected one of {sorted(LOG_LEVELS)}")
    aria2c_path = _str(aria2, "aria2c_path", "aria2.aria2c_path", "") or None
    log_file_raw = _str(data, "log_file", "log_file", "")
    log_format = _str(data, "log_format", "log_format", "plain").lower()
    if log_format not in ("plain", "json"):
        raise ConfigError("log_format", f"expected plain or json, got {log_format!r}")
    timeout = agent.get("heartbeat_timeout")

    return AgentConfig(
        dispatcher_url=_validate_url(_str(disp, "url", "dispatcher.url", "http://127.0.0.1:8000")),
        api_key=_str(disp, "api_key", "dispatcher.api_key", ""),
        heartbeat_interval=_number(disp, "heartbeat_interval", "dispatcher.heartbeat_interval", 10),
        heartbeat_timeout=(
            None
            if timeout is None
            else _number(agent, "heartbeat_timeout", "agent.heartbeat_timeout", 30)
        ),
        aria2_host=_validate_aria2_host(_str(aria2, "host", "aria2.host", "127.0.0.1")),
        aria2_port=_int(aria2, "port", "aria2.port", 0, 0, 65535),
        aria2_secret=_str(aria2, "rpc_secret", "aria2.rpc_secret", ""),
        aria2_rpc_path=rpc_path,
        aria2_spawn=_bool(aria2, "spawn", "aria2.spawn", True),
        aria2c_path=aria2c_path,
        download_dir=download_dir,
        global_options=_validate_global_options(aria2.get("global_options")),
        name=name,
        max_tasks=_int(worker, "max_tasks", "worker.max_tasks", 5, 1, 1000),
        capabilities=capabilities,
        state_dir=state_dir,
        log_level=log_level,
        log_file=Path(log_file_raw).expanduser().absolute() if log_file_raw else None,
        log_format=log_format,
    )


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Read ``path`` (may be None for defaults), apply env then ``overrides`` (dotted keys).

    ``overrides`` values of None are skipped so argparse defaults do not mask the file.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError("--config", f"{path} must hold a JSON object")
        data = loaded
    environ = os.environ if env is None else env
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            _set(data, dotted, environ[var])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(data, dotted, value)
    return parse_config(data)


__all__ = ["AgentConfig", "Capabilities", "ConfigError", "load_config", "parse_config"]
