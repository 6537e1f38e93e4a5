"""docker-compose.yml, the Dockerfile and .env.example, checked without Docker.

The compose file must parse, wire the services the way docs/installation.md describes, and
reference only files and services that exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker_agent.config import ENV_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_the_stack_is_postgres_redis_a_dispatcher_and_two_workers(compose: dict) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "dispatcher", "worker1", "worker2"}


def test_the_dispatcher_publishes_port_8000_and_uses_postgres_and_redis(compose: dict) -> None:
    dispatcher = compose["services"]["dispatcher"]
    env = _env(dispatcher)

    assert dispatcher["ports"] == ["${DISPATCHER_PORT:-8000}:8000"]
    assert env["DATABASE_URL"].startswith("postgres://ariacluster:")
    assert env["DATABASE_URL"].endswith("@postgres:5432/ariacluster")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "dispatcher" in env["ALLOWED_HOSTS"]
    assert dispatcher["entrypoint"] == ["/app/docker/entrypoint-dispatcher.sh"]


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(
    compose: dict,
) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            assert condition == {"condition": "service_healthy"}, name
    assert set(services["dispatcher"]["depends_on"]) == {"postgres", "redis"}
    assert "/healthz" in " ".join(services["dispatcher"]["healthcheck"]["test"])
    for worker in ("worker1", "worker2"):
        assert set(services[worker]["depends_on"]) == {"dispatcher"}
        assert services[worker]["healthcheck"]["test"] == [
            "CMD",
            "python",
            "-m",
            "worker_agent",
            "--check",
        ]


@pytest.mark.parametrize("worker", ["worker1", "worker2"])
def test_each_worker_downloads_into_its_own_folder_and_shares_data(
    compose: dict, worker: str
) -> None:
    service = compose["services"][worker]
    env = _env(service)

    assert f"./downloads/{worker}:/app/downloads" in service["volumes"]
    assert "./data:/app/data" in service["volumes"]
    assert env["ARIACLUSTER_WORKER_NAME"] == worker
    assert env["ARIACLUSTER_DISPATCHER_URL"] == "http://dispatcher:8000"
    assert env["ARIACLUSTER_DOWNLOAD_DIR"] == "/app/downloads"
    assert service["entrypoint"] == ["/app/docker/entrypoint-worker.sh"]


def test_worker_environment_names_are_ones_the_agent_reads(compose: dict) -> None:
    known = set(ENV_OVERRIDES) | {"ARIACLUSTER_WORKER_CONFIG", "ARIACLUSTER_DATA_DIR"}
    for worker in ("worker1", "worker2"):
        assert set(_env(compose["services"][worker])) <= known


def test_every_file_the_stack_references_exists(compose: dict) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for entry in service.get("entrypoint") or []:
            if entry.startswith("/app/"):
                script = ROOT / entry.removeprefix("/app/")
                assert script.is_file(), entry
                assert script.stat().st_mode & 0o111, f"{entry} is not executable"
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if source.startswith("./config"):
                assert (ROOT / source).is_dir()
            if target == "/app/config":
                assert (ROOT / "config" / "worker.json").is_file()
        worker_config = _env(service).get("ARIACLUSTER_WORKER_CONFIG")
        if worker_config:
            assert (ROOT / worker_config.removeprefix("/app/")).is_file()
    assert set(compose["volumes"]) == {"pgdata"}


def test_the_image_runs_as_a_non_root_user_with_aria2_from_the_distribution() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "apt-get install -y --no-install-recommends aria2" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] != "root"
    assert "SECRET" not in dockerfile


def test_no_secret_or_local_state_is_copied_into_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".env", "data", ".venv", "config/dispatcher.json", "config/worker.json"} <= ignored


def test_env_example_holds_no_secret_values() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )

    for name in ("POSTGRES_PASSWORD", "SECRET_KEY", "ARIACLUSTER_METRICS_TOKEN"):
        assert values[name] == "", name
    assert values["ARIACLUSTER_JOIN_KEY"] == ""
