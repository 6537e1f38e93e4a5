"""Check that the PostgreSQL and Redis used by the second test pass are reachable.

Usage: python -m tests.support.services_check POSTGRES_URL REDIS_URL. Exits 1 with a message
saying how to start them, so `make test` fails loudly instead of skipping that pass.
"""

from __future__ import annotations

import sys


def main(postgres_url: str, redis_url: str) -> int:
    import psycopg
    import redis

    problems = []
    try:
        with psycopg.connect(postgres_url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        problems.append(f"PostgreSQL at {postgres_url}: {exc}")
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis at {redis_url}: {exc}")
    if problems:
        print("The PostgreSQL + Redis test pass needs both services:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "Start them (see README, 'Running the tests') or point TEST_POSTGRES_URL / "
            "TEST_REDIS_URL at yours.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
