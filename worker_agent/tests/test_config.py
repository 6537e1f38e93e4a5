from __future__ import annotations

import json

import pytest

from worker_agent.config import ConfigError, load_config, parse_config
from worker_agent.main import main

ORIGINAL = {
    "dispatcher": {"url": "http://127.0.0.1:8000", "heartbeat_interval": 10, "api_key": "k"},
    "aria2": {
        "host": "localhost",
        "port": 6800,
        "rpc_secret": "",
        "rpc_path": "/jsonrpc",
        "download_dir": "downloads/worker1",
        "global_options": {"max-overall-download-limit": "0", "split": 5},
    },
    "worker": {
        "name": "worker1",
        "max_tasks": 5,
        "capabilities": {
            "disk_space": 0,
            "bandwidth": 0,
            "supports_bt": True,
            "supports_metalink": True,
            "tags": {"site": "home"},
        },
    },
    "log_level": "INFO",
}


def test_original_worker_json_schema_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_config(ORIGINAL)
    assert config.name == "worker1"
    assert config.max_tasks == 5
    assert config.download_dir == tmp_path / "downloads" / "worker1"
    assert config.state_dir == tmp_path / "downloads" / "worker1" / ".agent"
    assert config.aria2_spawn is True
    assert config.global_options == {"max-overall-download-limit": "0", "split": "5"}
    assert config.capabilities.tags == {"site": "home"}


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("aria2", "port", 70000, "aria2.port"),
        ("aria2", "port", "http", "aria2.port"),
        ("aria2", "host", "10.0.0.5", "aria2.host"),
        ("worker", "max_tasks", 0, "worker.max_tasks"),
        ("worker", "name", "bad name/..", "worker.name"),
        ("dispatcher", "url", "ftp://x", "dispatcher.url"),
        ("dispatcher", "heartbeat_interval", -1, "dispatcher.heartbeat_interval"),
        ("aria2", "global_options", {"rpc-secret": "x"}, "aria2.global_options.rpc-secret"),
        ("aria2", "global_options", {"dir": "/"}, "aria2.global_options.dir"),
        ("aria2", "global_options", {"on-download-complete": "sh"}, "on-download-complete"),
        ("aria2", "global_options", {"header": "a\nb"}, "aria2.global_options.header"),
    ],
)
def test_bad_values_raise_an_error_naming_the_key(section, key, value, named):
    data = json.loads(json.dumps(ORIGINAL))
    data[section][key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert named in str(info.value)


def test_environment_overrides_the_file_and_flags_override_the_environment(tmp_path):
    path = tmp_path / "worker.json"
    path.write_text(json.dumps(ORIGINAL))
    env = {"ARIACLUSTER_JOIN_KEY": "from-env", "ARIACLUSTER_WORKER_NAME": "env-name"}
    config = load_config(path, env=env, overrides={"worker.name": "flag-name", "x.y": None})
    assert config.api_key == "from-env"
    assert config.name == "flag-name"


def test_invalid_config_exits_with_code_2_and_names_the_key(tmp_path, capsys):
    path = tmp_path / "worker.json"
    data = json.loads(json.dumps(ORIGINAL))
    data["worker"]["max_tasks"] = "many"
    path.write_text(json.dumps(data))
    assert main(["--config", str(path)]) == 2
    assert "worker.max_tasks" in capsys.readouterr().err


def test_unreadable_config_file_exits_with_code_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
