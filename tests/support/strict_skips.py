"""pytest plugin: with ARIACLUSTER_FAIL_ON_SKIP=1 (set by .ci/run), any skipped test fails the run.

CI has PostgreSQL, Redis, aria2c and Chromium; a skip there means a test silently did not run.
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("ARIACLUSTER_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = ", ".join(getattr(r, "nodeid", "?") for r in skipped[:10])
        if reporter:
            reporter.write_line(f"FAIL: {len(skipped)} test(s) skipped in CI: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
