"""Every HTML page carries a Content-Security-Policy that allows no inline or eval'd script."""

from __future__ import annotations

import pytest
from django.test import Client


def _directives(header: str) -> dict[str, str]:
    return {part.split()[0]: part for part in (p.strip() for p in header.split(";")) if part}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/v1/docs/"])
def test_html_pages_forbid_inline_and_eval_scripts(path: str) -> None:
    response = Client().get(path)
    assert response.status_code in (200, 302, 401, 403)
    header = response.headers.get("Content-Security-Policy")
    if "text/html" not in response.headers.get("Content-Type", ""):
        pytest.fail(f"{path} did not answer HTML: {response.headers.get('Content-Type')}")
    assert header, f"{path} has no Content-Security-Policy"
    script = _directives(header)["script-src"]
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert "frame-ancestors 'none'" in header


@pytest.mark.django_db
def test_dashboard_pages_forbid_inline_styles_too(admin_client: Client) -> None:
    response = admin_client.get("/")
    assert response.status_code == 200
    assert _directives(response.headers["Content-Security-Policy"])["style-src"] == (
        "style-src 'self'"
    )
