"""The browser and the agent served by two different dispatcher processes sharing PostgreSQL and
Redis: a download added in the browser completes live on its page, every change having crossed
from the agent's dispatcher to the browser's through Redis.

Runs in the PostgreSQL + Redis pass (marker `postgres`): with SQLite and the in-memory channel
layer the browser's process would never hear of the other process's progress.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from ariacluster.localcluster import free_port
from tests.browser.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CspWatch,
    assert_not_reloaded,
    log_in,
    mark_page,
    wait_live,
)
from tests.support.e2e import dump_logs, running_cluster

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(240)]

USER, PASSWORD = "ui", "ui-password-1234"
# Heartbeats far apart, so what the page shows comes from progress pushed across processes.
CONFIG = {"worker_management": {"heartbeat_interval": 3, "heartbeat_timeout": 8}}


def test_a_download_added_in_the_browser_completes_live_when_the_agent_uses_another_process(
    tmp_path: Path,
) -> None:
    assert os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"), (
        "needs DATABASE_URL and REDIS_URL (make test-postgres)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    with running_cluster(tmp_path, workers=0, config=CONFIG) as cluster:
        try:
            _run(cluster)
        except Exception:
            print(dump_logs(tmp_path))
            raise


def _run(cluster: Any) -> None:
    cluster.local.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({USER!r}, password={PASSWORD!r}, is_staff=True)",
    )
    port = free_port()
    cluster.local.start_dispatcher(port=port)
    cluster.start_agent("w1", dispatcher_url=f"http://127.0.0.1:{port}", heartbeat_interval=3)
    url = cluster.add_file("across.bin", 4_000_000) + "?throttle=1000000"

    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        watch = CspWatch(context)
        page = context.new_page()
        try:
            log_in(page, cluster.local.url, USER, PASSWORD)
            # The worker appears on the page served by the first process.
            page.click("nav >> text=Workers")
            mark_page(page)
            wait_live(page)
            cluster.wait_for_workers(1)
            expect(page.locator("tr", has_text="w1").locator(".badge").first).to_have_text(
                re.compile("online|busy"), timeout=15_000
            )
            assert_not_reloaded(page)

            page.click("nav >> text=Add downloads")
            page.fill("#id_uris", url)
            page.fill("#id_split", "1")
            page.click("#add-form button[type=submit]")
            expect(page).to_have_url(re.compile(r"/tasks/$"))
            task_id = int(cluster.api.get("/api/v1/tasks/?page_size=1")["results"][0]["id"])
            page.click(f"#task-{task_id} a")
            expect(page).to_have_url(re.compile(rf"/tasks/{task_id}/$"))
            mark_page(page)
            wait_live(page)
            bar = page.locator("#task-detail progress.wide")
            badge = page.locator("#task-detail .badge").first
            seen: set[float] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and badge.inner_text() != "completed":
                seen.add(float(bar.get_attribute("value") or 0))
                time.sleep(0.1)
            expect(badge).to_have_text("completed")
            expect(bar).to_have_attribute("value", "100.00")
            assert any(0 < value < 100 for value in seen), f"progress never moved: {sorted(seen)}"
            assert_not_reloaded(page)
            task = cluster.api.task(task_id)
            assert task["worker"] == "w1"
            cluster.assert_downloaded(task, "across.bin")
            assert watch.problems() == []
        finally:
            context.close()
            browser.close()
