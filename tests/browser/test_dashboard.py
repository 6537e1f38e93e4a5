"""The dashboard in a real browser (Debian's Chromium) against a real cluster.

A real dispatcher, two agents with aria2c and a Range server run as subprocesses (so Playwright's
own event loop never meets the dispatcher's). Screenshots go to $ARIACLUSTER_SCREENSHOTS (default
/tmp/ariacluster-screenshots).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import (
    assert_not_reloaded,
    launched_chromium,
    mark_page,
    screenshot,
    staffed_cluster,
    wait_live,
)
from tests.support.e2e import Cluster

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.any_backend,
    pytest.mark.timeout(240),
]

USER, PASSWORD = "ui", "ui-password-1234"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("browser")
    with staffed_cluster(base, workers=2, user=USER, password=PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium(playwright_sync) as launched:
        yield launched


@pytest.fixture
def page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(cluster.local.url + "/")
    page.fill("#id_username", USER)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(cluster.local.url + "/")
    yield page
    context.close()


def test_a_download_added_through_the_form_completes_live_and_another_is_canceled(
    page: Any, cluster: Cluster
) -> None:
    url = cluster.add_file("form.bin", 4_000_000) + "?throttle=1000000"
    slow_url = cluster.add_file("slow.bin", 20_000_000) + "?throttle=200000"
    page.click("nav >> text=Add downloads")
    page.fill("#id_uris", url)
    page.fill("#id_split", "1")
    page.click("#add-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/tasks/$"))
    mark_page(page)
    wait_live(page)
    row = page.locator("tbody tr.row").first
    task_id = int(row.get_attribute("id").removeprefix("task-"))
    assert cluster.api.task(task_id)["uris"] == [url]
    bar = page.locator(f"#task-{task_id} progress")
    seen: set[float] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.add(float(bar.get_attribute("value") or 0))
        if page.locator(f"#task-{task_id} .badge").inner_text() == "completed":
            break
        time.sleep(0.1)
    expect(page.locator(f"#task-{task_id} .badge")).to_have_text("completed")
    expect(bar).to_have_attribute("value", "100.00")
    assert any(0 < value < 100 for value in seen), f"progress never moved: {sorted(seen)}"
    assert_not_reloaded(page)

    # A second download, added by a script, appears live; cancel it mid-way from the list.
    slow_id = cluster.api.post("/api/v1/tasks/", {"url": slow_url})["id"]
    slow_row = page.locator(f"#task-{slow_id}")
    expect(slow_row.locator(".badge")).to_have_text("downloading", timeout=20_000)
    page.check(f"#sel-{slow_id}")
    page.click("#bulk-form button[value=cancel]")
    expect(slow_row.locator(".badge")).to_have_text("canceled", timeout=10_000)
    assert cluster.api.task(slow_id)["status"] == "canceled"
    assert_not_reloaded(page)
    screenshot(page, "tasks")
    page.click("nav >> text=Overview")
    expect(page.locator("#overview-live")).to_be_visible()
    screenshot(page, "overview")
    page.goto(cluster.local.url + f"/tasks/{task_id}/")
    screenshot(page, "task-detail")


def test_the_page_reconnects_and_rereads_after_the_websocket_drops(
    page: Any, cluster: Cluster
) -> None:
    state: dict[str, Any] = {"refuse": False, "routes": []}

    def route(ws: Any) -> None:
        if state["refuse"]:
            ws.close()
            return
        ws.connect_to_server()
        state["routes"].append(ws)

    page.route_web_socket(re.compile(r"/ws/dashboard/$"), route)
    page.goto(cluster.local.url + "/tasks/")
    mark_page(page)
    wait_live(page)

    state["refuse"] = True
    for ws in state["routes"]:
        ws.close()
    page.wait_for_selector("body[data-live-connected=false]", state="attached")
    expect(page.locator("#live-status")).to_have_text("reconnecting…")
    url = cluster.add_file("while-away.bin", 10_000)
    task_id = cluster.api.post("/api/v1/tasks/", {"url": url})["id"]
    cluster.api.wait_for(task_id, {"completed"})
    time.sleep(1.0)
    # Its notices went out while the page was disconnected: nothing reached the page.
    assert page.locator(f"#task-{task_id}").count() == 0

    state["refuse"] = False
    wait_live(page)
    expect(page.locator(f"#task-{task_id} .badge")).to_have_text("completed", timeout=10_000)
    expect(page.locator("#live-status")).to_have_text("live")
    assert_not_reloaded(page)


def test_a_worker_goes_offline_on_the_workers_page_when_its_agent_stops(
    page: Any, cluster: Cluster
) -> None:
    page.click("nav >> text=Workers")
    mark_page(page)
    wait_live(page)
    worker = next(w for w in cluster.api.get("/api/v1/workers/") if w["name"] == "w2")
    badge = page.locator(f"#worker-{worker['id']} .badge").first
    expect(badge).to_have_text(re.compile("online|busy"))
    screenshot(page, "workers")
    agent = cluster.local.agents["w2"]
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=20)
    expect(badge).to_have_text("offline", timeout=30_000)
    assert_not_reloaded(page)
