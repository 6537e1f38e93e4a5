"""Fixtures shared by the cross-process tests in this folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.e2e import scratch_postgres_database

PG_ADMIN_URL = os.environ.get(
    "ARIACLUSTER_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A dedicated PostgreSQL database for one test, created fresh and dropped afterwards.

    PostgreSQL not reachable: a failure in CI (where it must run), a skip elsewhere.
    """
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    prefix = "ariacluster_" + request.node.module.__name__.rsplit(".", 1)[-1]
    with scratch_postgres_database(PG_ADMIN_URL, prefix[:40]) as url:
        yield url
