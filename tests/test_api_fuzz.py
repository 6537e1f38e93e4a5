"""Property-based fuzzing of the REST API from its own OpenAPI schema (schemathesis).

Every documented operation gets generated requests, valid ones and deliberately invalid ones,
sent in-process to the Django WSGI application with a real admin API key. The contract: no
answer is a 5xx and every answer matches the schema (bad input is a 400 with the JSON error
shape, never a crash). Bounded: a few dozen examples per operation, well under 90 s in all.
"""

from __future__ import annotations

import time
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from dispatcher.keys import api_key_create
from workers_app.services import join_key_create, worker_register

EXAMPLES_PER_MODE = 15
BUDGET_SECONDS = 90.0


def _failures_of(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    """Run one operation's examples; return a short description of each distinct failure."""
    found: list[str] = []

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        try:
            case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
            )
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported
            text = f"{operation.label} [{mode.value}]: {str(exc).strip()[:600]}"
            if text not in found:
                found.append(text)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # No invalid input expressible for this operation (e.g. nothing but path integers).
        pass
    return found


@pytest.mark.django_db(transaction=True)
def test_every_api_operation_survives_generated_input_without_5xx_or_schema_violations(
    settings: Any,
) -> None:
    # Rate limits would turn the fuzzing into 429s; they have their own tests.
    import dataclasses

    config = settings.ARIACLUSTER
    settings.ARIACLUSTER = dataclasses.replace(
        config,
        security=dataclasses.replace(config.security, rate_limits={"read": None, "write": None}),
    )
    _, key = api_key_create(name="fuzz", scope="admin")
    _, join_key = join_key_create(name="fuzz")
    token = worker_register(
        name="fuzz-worker",
        hostname="h",
        pid=1,
        agent_version="0",
        aria2_version="1.37.0",
        max_tasks=2,
        free_disk=0,
        capabilities={},
    ).token
    credentials = {
        "user": {"X-API-Key": key},
        "register": {"X-Join-Key": join_key},
        "agent": {"Authorization": f"Bearer {token}"},
    }
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    raw = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert raw.status_code == 200
    schema = schemathesis.openapi.from_dict(raw.json())
    schema.app = get_wsgi_application()
    schema.location = "/api/v1/schema/"

    started = time.monotonic()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        path = operation.path
        who = "user"
        if path.startswith("/api/agent/"):
            who = "register" if path.endswith("/register") else "agent"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_failures_of(operation, mode, credentials[who]))
    elapsed = time.monotonic() - started

    assert operations >= 10, "the schema should document the task and worker API"
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET_SECONDS, f"fuzzing took {elapsed:.0f} s"
