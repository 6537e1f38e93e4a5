"""The `webhooks` section: off by default, URLs checked against the URL policy at load, and a
signing secret that comes from the environment or a 0600 file, never from the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ariacluster.config import ConfigError, WebhooksConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "webhook-secret-0123456789abcdefghijklmn"
HOOK = "https://hooks.example.com/ariacluster"


@pytest.fixture(autouse=True)
def _no_secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARIACLUSTER_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("ARIACLUSTER_PRODUCTION", raising=False)


def test_webhooks_are_off_by_default() -> None:
    config = parse_config({}).webhooks

    assert config == WebhooksConfig()
    assert config.urls == ()
    assert config.events == ("task.completed", "task.failed")
    assert (config.timeout, config.max_attempts, config.backoff) == (5.0, 10, 10.0)


def test_urls_with_the_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", SECRET)

    config = parse_config(
        {"webhooks": {"urls": [HOOK], "events": ["task.failed"], "max_attempts": 3}}
    ).webhooks

    assert config.urls == (HOOK,)
    assert config.events == ("task.failed",)
    assert config.max_attempts == 3
    assert config.secret == SECRET
    assert SECRET not in repr(config)


def test_the_secret_file_must_be_private(tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook_secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o644)
    raw = {"webhooks": {"urls": [HOOK], "secret_file": str(secret_file)}}

    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    assert str(excinfo.value).startswith("webhooks.secret_file:")
    assert "chmod 600" in str(excinfo.value)

    secret_file.chmod(0o600)
    assert parse_config(raw).webhooks.secret == SECRET


def test_the_environment_wins_over_the_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "webhook_secret"
    secret_file.write_text("file-secret-0123456789abcdefghijklmnopq")
    secret_file.chmod(0o600)
    monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", SECRET)

    config = parse_config({"webhooks": {"urls": [HOOK], "secret_file": str(secret_file)}})

    assert config.webhooks.secret == SECRET


@pytest.mark.parametrize(
    ("webhooks", "key_path", "words"),
    [
        ({"urls": [HOOK]}, "webhooks.urls", "ARIACLUSTER_WEBHOOK_SECRET"),
        ({"secret": SECRET}, "webhooks.secret", "not allowed in the file"),
        ({"urls": ["http://169.254.169.254/hook"]}, "webhooks.urls[0]", "denied network"),
        ({"urls": [HOOK, "ftp://files.example/x"]}, "webhooks.urls[1]", "http:// or https://"),
        ({"urls": ["https://"]}, "webhooks.urls[0]", "no host"),
        ({"urls": ["https://hooks.example.com/café"]}, "webhooks.urls[0]", "non-ASCII"),
        ({"urls": ["https://bücher.example/in"]}, "webhooks.urls[0]", "xn--"),
        ({"urls": "https://a.example/"}, "webhooks.urls", "expected list"),
        ({"events": ["task.started"]}, "webhooks.events[0]", "must be one of"),
        ({"timeout": 0}, "webhooks.timeout", "> 0"),
        ({"timeout": 600}, "webhooks.timeout", "at most 60"),
        ({"max_attempts": 0}, "webhooks.max_attempts", "1-100"),
        ({"backoff": -1}, "webhooks.backoff", "> 0"),
        ({"retries": 3}, "webhooks.retries", "unknown key"),
    ],
)
def test_bad_webhook_settings_are_refused_naming_their_key(
    webhooks: dict[str, object], key_path: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if key_path != "webhooks.urls" or "urls" not in webhooks:
        monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", SECRET)

    with pytest.raises(ConfigError) as excinfo:
        parse_config({"webhooks": webhooks})

    assert str(excinfo.value).startswith(f"{key_path}:")
    assert words in str(excinfo.value)
    assert SECRET not in str(excinfo.value)


def test_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", "short")

    with pytest.raises(ConfigError, match=r"ARIACLUSTER_WEBHOOK_SECRET: .* at least 32"):
        parse_config({"webhooks": {"urls": [HOOK]}})


def test_loopback_receivers_follow_the_url_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIACLUSTER_WEBHOOK_SECRET", SECRET)
    local = {"urls": ["http://127.0.0.1:9000/hook"]}

    assert parse_config({"webhooks": local}).webhooks.urls == ("http://127.0.0.1:9000/hook",)
    with pytest.raises(ConfigError, match=r"webhooks.urls\[0\]: .*loopback"):
        parse_config({"security": {"url_policy": {"allow_loopback": False}}, "webhooks": local})
    monkeypatch.setenv("ARIACLUSTER_PRODUCTION", "1")
    with pytest.raises(ConfigError, match="loopback"):
        parse_config({"webhooks": local})


def test_a_denied_webhook_url_stops_start_up_with_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.json"
    path.write_text(json.dumps({"webhooks": {"urls": ["http://[fe80::1]/hook"]}}))
    env = {**os.environ, "ARIACLUSTER_CONFIG": str(path), "ARIACLUSTER_WEBHOOK_SECRET": SECRET}

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "webhooks.urls[0]: denied by the URL policy" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match=r"dispatcher.json: webhooks.urls\[0\]"):
        load_config(path)
