"""docs/configuration.md names every configuration key and every environment variable we read."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ariacluster.config import DispatcherConfig
from worker_agent.config import ENV_OVERRIDES, KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "configuration.md").read_text()
_READS = re.compile(
    r"""(?:environ\.get\(|environ\[|envbool\(|envlist\(|envint\(|_env_flag\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Set by Django's own entry points, not by operators.
NOT_OPERATOR_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def dispatcher_keys() -> list[str]:
    """Top-level keys and one level into each section, from the config dataclasses."""
    keys = []
    for top in dataclasses.fields(DispatcherConfig):
        if top.name == "source":
            continue
        default = getattr(DispatcherConfig(), top.name)
        if dataclasses.is_dataclass(default):
            keys += [f"{top.name}.{f.name}" for f in dataclasses.fields(default)]
        else:
            keys.append(top.name)
    return keys


def worker_keys() -> list[str]:
    return [
        f"{section}.{key}" if section else key
        for section, keys in KNOWN_KEYS.items()
        for key in sorted(keys)
        if not (section == "" and key in KNOWN_KEYS)
    ]


def environment_variables() -> list[str]:
    found = set(ENV_OVERRIDES)
    sources = [*(ROOT / "ariacluster").glob("*.py"), *(ROOT / "worker_agent").glob("*.py")]
    for path in sources:
        found |= set(_READS.findall(path.read_text()))
    for script in (ROOT / "docker").glob("*.sh"):
        found |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+):", script.read_text()))
    return sorted(found - NOT_OPERATOR_SETTINGS)


def _documented(key: str) -> bool:
    # `a.b` itself, or a row like `a.b` / `a.c`, or a parent key that lists it: `a.b.c`.
    return f"`{key}`" in DOC or f"`{key}." in DOC or f"`{key} " in DOC


@pytest.mark.parametrize("key", dispatcher_keys())
def test_every_dispatcher_json_key_is_documented(key: str) -> None:
    assert _documented(key), f"docs/configuration.md does not mention `{key}`"


@pytest.mark.parametrize("key", worker_keys())
def test_every_worker_json_key_is_documented(key: str) -> None:
    short = key.split(".", 1)[1] if key.startswith("aria2.") else key
    assert _documented(key) or f"/ `{short}`" in DOC, f"docs/configuration.md misses `{key}`"


@pytest.mark.parametrize("name", environment_variables())
def test_every_environment_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC, f"docs/configuration.md does not mention `{name}`"


def test_the_scan_finds_the_variables_it_should() -> None:
    names = environment_variables()

    assert {"DATABASE_URL", "ARIACLUSTER_METRICS_TOKEN", "ARIACLUSTER_JOIN_KEY"} <= set(names)
