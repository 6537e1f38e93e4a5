"""OpenAPI wiring: how our authentication schemes appear, and which paths are documented."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[misc]
    target_class = "ariacluster.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}


class WorkerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[misc]
    target_class = "workers_app.agent_api.WorkerTokenAuthentication"
    name = "WorkerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}


def documented_paths_only(endpoints: list[Any], **kwargs: Any) -> list[Any]:
    """Document /api/v1 and the agent API; the original /api/* paths are aliases of v1."""
    return [e for e in endpoints if e[0].startswith(("/api/v1/", "/api/agent/v1/"))]


class JoinKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[misc]
    target_class = "workers_app.agent_api.JoinKeyChallenge"
    name = "JoinKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "X-Join-Key"}
