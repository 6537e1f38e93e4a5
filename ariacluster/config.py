"""Read and validate `config/dispatcher.json` (the original system's schema).

The file is optional: every key has a default, and environment variables override the file
(see `docs/configuration.md`). Validation is strict: an unknown key or a wrong type stops
start-up with a `ConfigError` naming the key path, e.g. ``task_assignment.strategy``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker_agent.urlpolicy import PolicyError, UrlDenied, UrlPolicy

BACKOFFS = ("fixed", "exponential")
STRATEGIES = ("least_loaded", "round_robin", "random", "tags")
DATABASE_TYPES = ("memory", "sqlite", "postgresql")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# The original system's well-known default key; refused like any key shorter than MIN_KEY_LENGTH.
DEFAULT_KEY = "default-api-key-change-me"
MIN_KEY_LENGTH = 32
DEFAULT_RATE_LIMITS = {"read": "6000/min", "write": "1200/min"}
_RATE = re.compile(r"^[0-9]{1,9}/(s|sec|second|m|min|minute|h|hour|d|day)$")
PROJECT_DIR = Path(__file__).resolve().parent.parent

WEBHOOK_EVENTS = ("task.completed", "task.failed")
WEBHOOK_SECRET_ENV = "ARIACLUSTER_WEBHOOK_SECRET"
MIN_WEBHOOK_SECRET_LENGTH = 32
MAX_WEBHOOK_URL_LENGTH = 2048
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


class ConfigError(Exception):
    """The configuration file is unreadable or holds an invalid value."""


@dataclass(frozen=True)
class DatabaseConfig:
    type: str = "sqlite"
    path: str = "data/dispatcher.db"
    url: str = ""


@dataclass(frozen=True)
class TaskAssignmentConfig:
    strategy: str = "least_loaded"
    max_retries: int = 3
    retry_delay: float = 300.0
    # "fixed": every retry waits retry_delay (the original's behaviour); "exponential": the n-th
    # retry waits retry_delay * 2^(n-1), at most retry_delay_max, times a random 0.5-1.0.
    retry_backoff: str = "fixed"
    retry_delay_max: float = 3600.0
    # A task whose worker went silent this many times is failed, not placed again (poison task).
    max_lease_losses: int = 3
    # Upper bounds for what a task may ask with the seed-time (minutes) / seed-ratio options.
    max_seed_time: float = 60.0
    max_seed_ratio: float = 2.0


@dataclass(frozen=True)
class WorkerManagementConfig:
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    auto_remove_offline: bool = False
    offline_threshold: float = 3600.0


@dataclass(frozen=True)
class SecurityConfig:
    api_key_required: bool = True
    api_keys: tuple[str, ...] = ()
    join_keys: tuple[str, ...] = ()
    max_request_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = 10 * 1024 * 1024
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)
    # DRF throttle rates ("600/min", null = none) per key or login: `read` for GET/HEAD/OPTIONS,
    # `write` for every other request (a batch of tasks counts once).
    rate_limits: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    max_queued_per_user: int = 10000


@dataclass(frozen=True)
class WebhooksConfig:
    """Where task notifications go (`urls`, besides each API key's own URL) and how hard to try."""

    urls: tuple[str, ...] = ()
    events: tuple[str, ...] = WEBHOOK_EVENTS
    secret_file: str = ""
    timeout: float = 5.0
    max_attempts: int = 10
    # The n-th retry waits backoff * 2^(n-1) seconds, at most backoff_max, times 0.5-1.0.
    backoff: float = 10.0
    backoff_max: float = 3600.0
    # Signs deliveries to `urls`: from ARIACLUSTER_WEBHOOK_SECRET or `secret_file`, never the JSON.
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class DispatcherConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    task_assignment: TaskAssignmentConfig = field(default_factory=TaskAssignmentConfig)
    worker_management: WorkerManagementConfig = field(default_factory=WorkerManagementConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    source: str = ""


def _expect(value: Any, kind: type | tuple[type, ...], path: str) -> Any:
    # bool is an int subclass in Python; a JSON true is never a valid number here.
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{path}: expected {name}, got {type(value).__name__} {value!r}")
    return value


def _section(raw: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    section = raw.get(name, {})
    _expect(section, dict, name)
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}: unknown key (allowed: {sorted(allowed)})")
    return dict(section)


def _positive(value: Any, path: str, *, allow_zero: bool = False) -> float:
    number = float(_expect(value, (int, float), path))
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _refuse_weak_key(key: str, path: str) -> None:
    """Refuse the original's default key and short keys unless DEBUG is on."""
    if _env_flag("DEBUG"):
        return
    if key == DEFAULT_KEY or len(key) < MIN_KEY_LENGTH:
        what = "the well-known default key" if key == DEFAULT_KEY else "shorter than 32 characters"
        raise ConfigError(
            f"{path}: refused, {what}. Create a real key with `manage.py create_api_key` "
            "(or `manage.py create_join_key` for workers), or put a random one here, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def _url_policy(raw: Any) -> UrlPolicy:
    """`security.url_policy`; loopback and private ranges default to off in production."""
    _expect(raw, dict, "security.url_policy")
    production = _env_flag("ARIACLUSTER_PRODUCTION")
    values = dict(raw)
    for name in ("allow_private", "allow_loopback"):
        if values.get(name) is None:
            values[name] = not production
    try:
        return UrlPolicy.from_dict(values, key="security.url_policy")
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def _rate_limits(raw: Any) -> dict[str, str | None]:
    _expect(raw, dict, "security.rate_limits")
    rates: dict[str, str | None] = dict(DEFAULT_RATE_LIMITS)
    for scope, rate in raw.items():
        path = f"security.rate_limits.{scope}"
        if scope not in DEFAULT_RATE_LIMITS:
            raise ConfigError(f"{path}: unknown key (allowed: {sorted(DEFAULT_RATE_LIMITS)})")
        if rate is not None and not (isinstance(rate, str) and _RATE.match(rate)):
            raise ConfigError(f"{path}: expected a rate like '600/min' or null (no limit)")
        rates[scope] = rate
    return rates


def webhook_policy(policy: UrlPolicy) -> UrlPolicy:
    """The URL policy for webhook receivers: the download policy, limited to http and https."""
    web = tuple(s for s in policy.allowed_schemes if s in ("http", "https"))
    return replace(policy, allowed_schemes=web)


def check_webhook_url(url: Any, policy: UrlPolicy) -> str:
    """Return `url` stripped if it may receive webhooks; raise ValueError saying why not.

    http or https only (whatever else the download policy allows), a host, ASCII only (no
    whitespace), and an address the URL policy allows as written. The sender checks again
    after DNS.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("must be a non-empty URL")
    clean: str = url.strip()
    if len(clean) > MAX_WEBHOOK_URL_LENGTH:
        raise ValueError(f"longer than {MAX_WEBHOOK_URL_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(clean):
        raise ValueError("contains whitespace or a control character")
    if not clean.isascii():
        # http.client sends the request line as ASCII: such a URL could never be delivered.
        raise ValueError(
            "contains non-ASCII characters: percent-encode them (é is %C3%A9) and write an "
            "international host name in its xn-- form"
        )
    try:
        parts = urlsplit(clean)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        webhook_policy(policy).check_uri(clean)
    except UrlDenied as exc:
        raise ValueError(f"denied by the URL policy: {exc.reason}") from None
    return clean


def _webhook_secret(secret_file: str) -> str:
    """The global signing secret: the environment variable wins over the 0600 file."""
    from_env = os.environ.get(WEBHOOK_SECRET_ENV, "").strip()
    if from_env:
        secret, where = from_env, WEBHOOK_SECRET_ENV
    elif secret_file:
        path = Path(secret_file)
        path = path if path.is_absolute() else PROJECT_DIR / path
        try:
            mode = path.stat().st_mode
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"webhooks.secret_file: cannot read {path} ({exc})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"webhooks.secret_file: {path} is readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); `chmod 600` it"
            )
        where = "webhooks.secret_file"
    else:
        raise ConfigError(
            f"webhooks.urls: set {WEBHOOK_SECRET_ENV} or webhooks.secret_file, so receivers "
            "can verify deliveries; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
        raise ConfigError(f"{where}: the webhook secret must be at least 32 characters")
    return secret


def _webhooks(raw: dict[str, Any], policy: UrlPolicy) -> WebhooksConfig:
    allowed = {"urls", "events", "secret_file", "timeout", "max_attempts", "backoff"}
    allowed |= {"backoff_max"}
    section = raw.get("webhooks", {})
    _expect(section, dict, "webhooks")
    if "secret" in section:
        raise ConfigError(
            f"webhooks.secret: not allowed in the file (config files end up in git); use "
            f"{WEBHOOK_SECRET_ENV} or webhooks.secret_file (mode 0600)"
        )
    wh = _section(raw, "webhooks", allowed)
    urls = []
    for index, url in enumerate(_expect(wh.get("urls", []), list, "webhooks.urls")):
        try:
            urls.append(check_webhook_url(url, policy))
        except ValueError as exc:
            raise ConfigError(f"webhooks.urls[{index}]: {exc}") from None
    events = _expect(wh.get("events", list(WEBHOOK_EVENTS)), list, "webhooks.events")
    for index, event in enumerate(events):
        if event not in WEBHOOK_EVENTS:
            raise ConfigError(
                f"webhooks.events[{index}]: must be one of {list(WEBHOOK_EVENTS)}, got {event!r}"
            )
    secret_file = _expect(wh.get("secret_file", ""), str, "webhooks.secret_file")
    max_attempts = _expect(
        wh.get("max_attempts", WebhooksConfig.max_attempts), int, "webhooks.max_attempts"
    )
    if not 1 <= max_attempts <= 100:
        raise ConfigError(f"webhooks.max_attempts: must be 1-100, got {max_attempts}")
    timeout = _positive(wh.get("timeout", WebhooksConfig.timeout), "webhooks.timeout")
    if timeout > 60:
        raise ConfigError(f"webhooks.timeout: at most 60 seconds, got {timeout:g}")
    return WebhooksConfig(
        urls=tuple(urls),
        events=tuple(dict.fromkeys(events)),
        secret_file=secret_file,
        timeout=timeout,
        max_attempts=max_attempts,
        backoff=_positive(wh.get("backoff", WebhooksConfig.backoff), "webhooks.backoff"),
        backoff_max=_positive(
            wh.get("backoff_max", WebhooksConfig.backoff_max), "webhooks.backoff_max"
        ),
        # Read only when something will be signed with it (keys' URLs have their own secrets).
        secret=_webhook_secret(secret_file) if urls else "",
    )


def parse_config(raw: Any, *, source: str = "") -> DispatcherConfig:
    """Validate a decoded JSON document and return the typed configuration."""
    _expect(raw, dict, "(top level)")
    top_keys = {
        "host",
        "port",
        "log_level",
        "database",
        "task_assignment",
        "worker_management",
        "security",
        "webhooks",
    }
    unknown = set(raw) - top_keys
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown key (allowed: {sorted(top_keys)})")
    defaults = DispatcherConfig()

    host = _expect(raw.get("host", defaults.host), str, "host")
    port = _expect(raw.get("port", defaults.port), int, "port")
    if not 0 < port < 65536:
        raise ConfigError(f"port: must be 1-65535, got {port}")
    log_level = _expect(raw.get("log_level", defaults.log_level), str, "log_level").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level: must be one of {list(LOG_LEVELS)}, got {log_level!r}")

    db = _section(raw, "database", {"type", "path", "url"})
    db_type = _expect(db.get("type", "sqlite"), str, "database.type")
    if db_type not in DATABASE_TYPES:
        raise ConfigError(f"database.type: must be one of {list(DATABASE_TYPES)}, got {db_type!r}")
    database = DatabaseConfig(
        type=db_type,
        path=_expect(db.get("path", DatabaseConfig.path), str, "database.path"),
        url=_expect(db.get("url", ""), str, "database.url"),
    )
    if db_type == "postgresql" and not database.url and not os.environ.get("DATABASE_URL"):
        raise ConfigError("database.url: required when database.type is 'postgresql'")

    ta = _section(
        raw,
        "task_assignment",
        {
            "strategy",
            "max_retries",
            "retry_delay",
            "retry_backoff",
            "retry_delay_max",
            "max_lease_losses",
            "max_seed_time",
            "max_seed_ratio",
        },
    )
    strategy = _expect(ta.get("strategy", "least_loaded"), str, "task_assignment.strategy")
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"task_assignment.strategy: must be one of {list(STRATEGIES)}, got {strategy!r}"
        )
    max_retries = _expect(ta.get("max_retries", 3), int, "task_assignment.max_retries")
    if max_retries < 0:
        raise ConfigError(f"task_assignment.max_retries: must be >= 0, got {max_retries}")
    backoff = _expect(ta.get("retry_backoff", "fixed"), str, "task_assignment.retry_backoff")
    if backoff not in BACKOFFS:
        raise ConfigError(
            f"task_assignment.retry_backoff: must be one of {list(BACKOFFS)}, got {backoff!r}"
        )
    lease_losses = _expect(ta.get("max_lease_losses", 3), int, "task_assignment.max_lease_losses")
    if lease_losses < 1:
        raise ConfigError(f"task_assignment.max_lease_losses: must be >= 1, got {lease_losses}")
    task_assignment = TaskAssignmentConfig(
        retry_backoff=backoff,
        retry_delay_max=_positive(
            ta.get("retry_delay_max", TaskAssignmentConfig.retry_delay_max),
            "task_assignment.retry_delay_max",
        ),
        max_lease_losses=lease_losses,
        strategy=strategy,
        max_retries=max_retries,
        retry_delay=_positive(
            ta.get("retry_delay", 300), "task_assignment.retry_delay", allow_zero=True
        ),
        max_seed_time=_positive(
            ta.get("max_seed_time", TaskAssignmentConfig.max_seed_time),
            "task_assignment.max_seed_time",
            allow_zero=True,
        ),
        max_seed_ratio=_positive(
            ta.get("max_seed_ratio", TaskAssignmentConfig.max_seed_ratio),
            "task_assignment.max_seed_ratio",
            allow_zero=True,
        ),
    )

    wm = _section(
        raw,
        "worker_management",
        {"heartbeat_interval", "heartbeat_timeout", "auto_remove_offline", "offline_threshold"},
    )
    interval = _positive(wm.get("heartbeat_interval", 10), "worker_management.heartbeat_interval")
    timeout = _positive(wm.get("heartbeat_timeout", 30), "worker_management.heartbeat_timeout")
    if timeout <= interval:
        raise ConfigError(
            "worker_management.heartbeat_timeout: must be greater than heartbeat_interval "
            f"({timeout} <= {interval})"
        )
    worker_management = WorkerManagementConfig(
        heartbeat_interval=interval,
        heartbeat_timeout=timeout,
        auto_remove_offline=_expect(
            wm.get("auto_remove_offline", False), bool, "worker_management.auto_remove_offline"
        ),
        offline_threshold=_positive(
            wm.get("offline_threshold", 3600), "worker_management.offline_threshold"
        ),
    )

    sec = _section(
        raw,
        "security",
        {"api_key_required", "api_keys", "join_keys", "max_request_bytes", "max_upload_bytes"}
        | {"url_policy", "rate_limits", "max_queued_per_user"},
    )
    keys: list[str] = []
    for name in ("api_keys", "join_keys"):
        values = _expect(sec.get(name, []), list, f"security.{name}")
        for index, key in enumerate(values):
            _expect(key, str, f"security.{name}[{index}]")
            if not key.strip():
                raise ConfigError(f"security.{name}[{index}]: must not be empty")
            _refuse_weak_key(key, f"security.{name}[{index}]")
        keys.append(name)
    max_bytes = _expect(
        sec.get("max_request_bytes", SecurityConfig.max_request_bytes),
        int,
        "security.max_request_bytes",
    )
    if max_bytes < 1024:
        raise ConfigError(f"security.max_request_bytes: must be >= 1024, got {max_bytes}")
    max_upload = _expect(
        sec.get("max_upload_bytes", SecurityConfig.max_upload_bytes),
        int,
        "security.max_upload_bytes",
    )
    if max_upload < 1024:
        raise ConfigError(f"security.max_upload_bytes: must be >= 1024, got {max_upload}")
    security = SecurityConfig(
        api_key_required=_expect(
            sec.get("api_key_required", True), bool, "security.api_key_required"
        ),
        api_keys=tuple(sec.get("api_keys", [])),
        join_keys=tuple(sec.get("join_keys", [])),
        max_request_bytes=max_bytes,
        max_upload_bytes=max_upload,
        url_policy=_url_policy(sec.get("url_policy", {})),
        rate_limits=_rate_limits(sec.get("rate_limits", {})),
        max_queued_per_user=_expect(
            sec.get("max_queued_per_user", SecurityConfig.max_queued_per_user),
            int,
            "security.max_queued_per_user",
        ),
    )
    if security.max_queued_per_user < 1:
        raise ConfigError("security.max_queued_per_user: must be >= 1")

    return DispatcherConfig(
        host=host,
        port=port,
        log_level=log_level,
        database=database,
        task_assignment=task_assignment,
        worker_management=worker_management,
        security=security,
        webhooks=_webhooks(raw, security.url_policy),
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None) -> DispatcherConfig:
    """Load the file at `path`; a missing default file yields the defaults."""
    if path is None:
        # Through the parser, so profile-dependent defaults (the URL policy) apply.
        return parse_config({})
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{file}: configuration file not found")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    try:
        return parse_config(raw, source=str(file))
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
