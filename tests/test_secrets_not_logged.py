"""API keys never reach the logs: a real `manage.py serve` is called with `?api_key=` (plain,
URL-encoded, refused, and a config-file key) and its whole output is searched for the keys."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.e2e import running_cluster

pytestmark = pytest.mark.e2e

CONFIG_KEY = "cfg-" + secrets.token_urlsafe(32)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_api_keys_in_the_query_string_never_appear_in_the_dispatcher_output(
    tmp_path: Path,
) -> None:
    with running_cluster(
        tmp_path, workers=0, config={"security": {"api_keys": [CONFIG_KEY]}}
    ) as cluster:
        base = cluster.local.url
        key = cluster.api.key
        wrong = key[:-6] + "zzzzzz"
        statuses = [
            _get(f"{base}/api/v1/tasks/?api_key={key}"),
            _get(f"{base}/api/tasks?page=1&api_key={urllib.parse.quote(key)}"),
            _get(f"{base}/api/v1/status/?api_key={CONFIG_KEY}"),
            _get(f"{base}/api/v1/tasks/?api_key={wrong}"),
            # The dashboard sends this to the login page with the key inside `next=`.
            _get(f"{base}/tasks/?api_key={key}"),
        ]
        cluster.local.stop()
    assert statuses[:4] == [200, 200, 200, 401]
    output = "\n".join(
        p.read_text(errors="replace") for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    assert "/api/v1/tasks/" in output, "the access log should show the requests"
    for secret in (key, wrong, CONFIG_KEY):
        tail = secret[-20:]
        assert tail not in output, f"a key leaked into the dispatcher output: ...{tail}"
