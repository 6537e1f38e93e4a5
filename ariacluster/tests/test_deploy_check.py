"""`manage.py check --deploy` is clean with the production profile, and refuses a missing key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_profile() -> None:
    result = _check(
        {
            "ARIACLUSTER_PRODUCTION": "1",
            "SECRET_KEY": "x" * 20 + "production-test-secret-key-with-enough-entropy-7f3a9c",
            "ALLOWED_HOSTS": "cluster.example.org",
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_profile_refuses_to_start_without_a_secret_key() -> None:
    result = _check({"ARIACLUSTER_PRODUCTION": "1"})
    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr
