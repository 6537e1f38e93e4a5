"""config/dispatcher.json: defaults, the original schema, and errors that name the key path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ariacluster.config import ConfigError, DispatcherConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

# Configured keys must be at least 32 characters (shorter ones are refused unless DEBUG).
LONG_KEY_ONE = "secret-one-0123456789abcdefghijklmnop"
LONG_KEY_TWO = "secret-two-0123456789abcdefghijklmnop"

ORIGINAL = {
    "host": "0.0.0.0",
    "port": 8080,
    "log_level": "debug",
    "database": {"type": "sqlite", "path": "data/tasks.db"},
    "task_assignment": {"strategy": "round_robin", "max_retries": 5, "retry_delay": 60},
    "worker_management": {
        "heartbeat_interval": 5,
        "heartbeat_timeout": 20,
        "auto_remove_offline": True,
        "offline_threshold": 600,
    },
    "security": {"api_key_required": True, "api_keys": [LONG_KEY_ONE, LONG_KEY_TWO]},
}


def test_an_empty_document_gives_the_defaults() -> None:
    config = parse_config({})

    assert config == DispatcherConfig()
    assert config.task_assignment.strategy == "least_loaded"
    assert config.task_assignment.max_retries == 3
    assert config.task_assignment.retry_delay == 300
    assert config.worker_management.heartbeat_interval == 10
    assert config.worker_management.heartbeat_timeout == 30
    assert config.worker_management.auto_remove_offline is False
    assert config.security.api_key_required is True
    assert config.database.type == "sqlite"


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None) == DispatcherConfig()


def test_the_original_schema_parses_with_every_value_kept(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.json"
    path.write_text(json.dumps(ORIGINAL))

    config = load_config(path)

    assert config.host == "0.0.0.0"
    assert config.port == 8080
    assert config.log_level == "DEBUG"
    assert config.database.path == "data/tasks.db"
    assert config.task_assignment.strategy == "round_robin"
    assert config.task_assignment.max_retries == 5
    assert config.task_assignment.retry_delay == 60
    assert config.worker_management.heartbeat_interval == 5
    assert config.worker_management.heartbeat_timeout == 20
    assert config.worker_management.auto_remove_offline is True
    assert config.worker_management.offline_threshold == 600
    assert config.security.api_keys == (LONG_KEY_ONE, LONG_KEY_TWO)
    assert config.source == str(path)


def test_postgresql_with_a_url_parses() -> None:
    config = parse_config({"database": {"type": "postgresql", "url": "postgres://h/db"}})

    assert config.database.type == "postgresql"
    assert config.database.url == "postgres://h/db"


@pytest.mark.parametrize(
    ("raw", "key_path"),
    [
        ({"task_assignment": {"strategy": "fastest"}}, "task_assignment.strategy"),
        ({"task_assignment": {"strategy": 1}}, "task_assignment.strategy"),
        ({"task_assignment": {"max_retries": -1}}, "task_assignment.max_retries"),
        ({"task_assignment": {"max_retries": "3"}}, "task_assignment.max_retries"),
        ({"task_assignment": {"retry_delay": -5}}, "task_assignment.retry_delay"),
        ({"task_assignment": {"retry_delay": True}}, "task_assignment.retry_delay"),
        ({"task_assignment": {"speed": 1}}, "task_assignment.speed"),
        (
            {"worker_management": {"heartbeat_interval": 30, "heartbeat_timeout": 30}},
            "worker_management.heartbeat_timeout",
        ),
        (
            {"worker_management": {"heartbeat_interval": 40, "heartbeat_timeout": 30}},
            "worker_management.heartbeat_timeout",
        ),
        ({"worker_management": {"heartbeat_interval": 0}}, "worker_management.heartbeat_interval"),
        (
            {"worker_management": {"auto_remove_offline": "yes"}},
            "worker_management.auto_remove_offline",
        ),
        ({"worker_management": {"offline_threshold": 0}}, "worker_management.offline_threshold"),
        ({"database": {"type": "mysql"}}, "database.type"),
        ({"database": {"type": "postgresql"}}, "database.url"),
        ({"database": {"path": 5}}, "database.path"),
        ({"database": {"file": "x.db"}}, "database.file"),
        ({"database": []}, "database"),
        ({"security": {"api_keys": "secret"}}, "security.api_keys"),
        ({"security": {"api_keys": [LONG_KEY_ONE, 5]}}, "security.api_keys[1]"),
        ({"security": {"api_keys": ["  "]}}, "security.api_keys[0]"),
        ({"security": {"join_keys": [""]}}, "security.join_keys[0]"),
        ({"security": {"api_key_required": "false"}}, "security.api_key_required"),
        ({"security": {"max_request_bytes": 10}}, "security.max_request_bytes"),
        ({"port": 0}, "port"),
        ({"port": "8000"}, "port"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"hosts": "x"}, "hosts"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key_path(
    raw: dict[str, Any], key_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)

    assert str(excinfo.value).startswith(f"{key_path}:")


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError, match="top level"):
        parse_config(["not", "an", "object"])


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.json"
    path.write_text("{not json")

    with pytest.raises(ConfigError, match="not valid JSON") as excinfo:
        load_config(path)

    assert str(path) in str(excinfo.value)


def test_a_missing_explicit_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.json")


def test_a_file_error_names_both_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.json"
    path.write_text(json.dumps({"task_assignment": {"strategy": "fastest"}}))

    with pytest.raises(ConfigError) as excinfo:
        load_config(path)

    assert str(path) in str(excinfo.value)
    assert "task_assignment.strategy" in str(excinfo.value)


@pytest.mark.parametrize(
    ("raw", "key_path"),
    [
        ({"task_assignment": {"strategy": "fastest"}}, "task_assignment.strategy"),
        (
            {"worker_management": {"heartbeat_interval": 30, "heartbeat_timeout": 10}},
            "worker_management.heartbeat_timeout",
        ),
    ],
)
def test_starting_with_an_invalid_file_exits_with_code_2_naming_the_key(
    tmp_path: Path, raw: dict[str, Any], key_path: str
) -> None:
    path = tmp_path / "dispatcher.json"
    path.write_text(json.dumps(raw))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        ARIACLUSTER_CONFIG=str(path),
        ARIACLUSTER_DATA_DIR=str(tmp_path / "data"),
        DJANGO_SETTINGS_MODULE="ariacluster.settings",
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stderr
    assert key_path in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["default-api-key-change-me", "short-key", "x" * 31])
@pytest.mark.parametrize("section", ["api_keys", "join_keys"])
def test_the_default_key_and_short_keys_are_refused_with_how_to_make_a_real_one(
    key: str, section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEBUG", raising=False)

    with pytest.raises(ConfigError) as excinfo:
        parse_config({"security": {section: [LONG_KEY_ONE, key]}})

    message = str(excinfo.value)
    assert message.startswith(f"security.{section}[1]: refused")
    assert "manage.py create_api_key" in message and key not in message


def test_weak_keys_are_accepted_in_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "1")

    config = parse_config({"security": {"api_keys": ["default-api-key-change-me"]}})

    assert config.security.api_keys == ("default-api-key-change-me",)


def test_loopback_and_private_urls_are_denied_by_default_only_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ARIACLUSTER_PRODUCTION", raising=False)
    demo = parse_config({}).security.url_policy
    monkeypatch.setenv("ARIACLUSTER_PRODUCTION", "1")
    production = parse_config({}).security.url_policy
    explicit = parse_config({"security": {"url_policy": {"allow_loopback": True}}})

    assert (demo.allow_loopback, demo.allow_private) == (True, True)
    assert (production.allow_loopback, production.allow_private) == (False, False)
    assert explicit.security.url_policy.allow_loopback is True
    assert [str(n) for n in production.deny_networks] == [
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
    ]


@pytest.mark.parametrize(
    ("security", "key_path"),
    [
        (
            {"url_policy": {"deny_networks": ["10.0.0.0/33"]}},
            "security.url_policy.deny_networks[0]",
        ),
        ({"url_policy": {"allow_loopback": "yes"}}, "security.url_policy.allow_loopback"),
        ({"url_policy": {"block": []}}, "security.url_policy.block"),
        ({"rate_limits": {"read": "lots"}}, "security.rate_limits.read"),
        ({"rate_limits": {"delete": "1/s"}}, "security.rate_limits.delete"),
        ({"max_queued_per_user": 0}, "security.max_queued_per_user"),
    ],
)
def test_bad_security_settings_are_refused_naming_their_key(
    security: dict[str, object], key_path: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"security": security})

    assert str(excinfo.value).startswith(f"{key_path}:")
