"""The dashboard's inputs in a real browser: a .torrent uploaded through the form waits for a
file selection made on its page, then completes live file by file; speed limits change on a
running task; and no page breaks the Content-Security-Policy.

A real dispatcher, one agent with aria2c and a Range server (the torrent's web seed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import (
    CspWatch,
    assert_not_reloaded,
    launched_chromium,
    log_in,
    mark_page,
    screenshot,
    staffed_cluster,
    wait_live,
)
from tests.support.e2e import Cluster
from tests.support.rangeserver import make_random_file
from tests.support.torrent import make_torrent

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
    base = tmp_path_factory.mktemp("browser-inputs")
    with staffed_cluster(base, workers=1, user=USER, password=PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium(playwright_sync) as launched:
        yield launched


@pytest.fixture
def csp(browser: Any) -> Iterator[tuple[Any, CspWatch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    watch = CspWatch(context)
    yield context, watch
    context.close()


@pytest.fixture
def page(csp: tuple[Any, CspWatch], cluster: Cluster) -> Iterator[Any]:
    context, watch = csp
    page = context.new_page()
    log_in(page, cluster.local.url, USER, PASSWORD)
    yield page
    assert watch.problems() == [], "CSP violations:\n" + "\n".join(watch.problems())


def _latest_task_id(cluster: Cluster) -> int:
    return int(cluster.api.get("/api/v1/tasks/?page_size=1")["results"][0]["id"])


def test_an_uploaded_torrent_waits_for_files_chosen_on_its_page_then_completes_live(
    page: Any, cluster: Cluster
) -> None:
    root = cluster.server.root / "pack"
    make_random_file(root / "a.bin", 300_000)
    make_random_file(root / "sub" / "b.bin", 1_500_000)
    torrent = make_torrent([root / "a.bin", root / "sub" / "b.bin"], name="pack", root=root)

    page.click("nav >> text=Add downloads")
    screenshot(page, "add")
    page.set_input_files(
        "#id_torrent",
        {"name": "pack.torrent", "mimeType": "application/x-bittorrent", "buffer": torrent},
    )
    page.fill("#id_web_seeds", cluster.server.url("/"))
    page.check("#id_pause_for_selection")
    page.click("#add-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/tasks/$"))
    task_id = _latest_task_id(cluster)
    task = cluster.api.task(task_id)
    assert (task["kind"], task["uris"], task["pause_for_selection"]) == (
        "torrent",
        [cluster.server.url("/")],
        True,
    )

    page.click(f"#task-{task_id} a")
    expect(page).to_have_url(re.compile(rf"/tasks/{task_id}/$"))
    mark_page(page)
    wait_live(page)
    expect(page.locator("#awaiting-selection")).to_be_visible()
    # The agent reports the hold live: the phase shows up without a reload.
    expect(page.locator("dd.phase")).to_have_text("awaiting selection", timeout=20_000)
    assert cluster.api.task(task_id)["completed_length"] == 0
    screenshot(page, "task-files")

    page.uncheck("#select-file-1")
    page.click("#file-select button[type=submit]")
    expect(page.locator("#messages")).to_contain_text("downloading 1 file(s)")
    expect(page.locator("#awaiting-selection")).to_have_count(0)
    bar = page.locator("#file-2 progress")
    expect(page.locator("#task-detail .badge").first).to_have_text("completed", timeout=40_000)
    expect(bar).to_have_attribute("value", "100.0")
    expect(page.locator("#file-1")).to_have_class(re.compile("unselected"))
    assert_not_reloaded(page)
    done = cluster.api.task(task_id)
    assert [f["selected"] for f in done["files"]] == [False, True]
    assert [f["path"] for f in done["result"]["files"]] == [f"task-{task_id}/pack/sub/b.bin"]


def test_speed_limits_change_on_a_running_download_from_its_page(
    page: Any, cluster: Cluster
) -> None:
    url = cluster.add_file("limited.bin", 20_000_000) + "?throttle=400000"
    task_id = cluster.api.post("/api/v1/tasks/", {"url": url})["id"]
    page.goto(cluster.local.url + f"/tasks/{task_id}/")
    mark_page(page)
    wait_live(page)
    expect(page.locator("#task-detail .badge").first).to_have_text("downloading", timeout=20_000)
    page.fill("#id_max_download_limit", "100K")
    time.sleep(1.2)  # live refreshes meanwhile must keep what was typed
    expect(page.locator("#id_max_download_limit")).to_have_value("100K")
    page.click("#limits-form button[type=submit]")
    expect(page.locator("#messages")).to_contain_text("speed limits set")
    assert cluster.api.task(task_id)["options"] == {"max-download-limit": "100K"}
    page.fill("#id_max_download_limit", "fast")
    page.click("#limits-form button[type=submit]")
    expect(page.locator("#id_max_download_limit-err")).to_contain_text("max-download-limit")
    assert cluster.api.task(task_id)["options"] == {"max-download-limit": "100K"}
    assert_not_reloaded(page)
    page.click("#task-detail button.danger")
    expect(page.locator("#task-detail .badge").first).to_have_text("canceled")


def test_no_dashboard_page_breaks_the_content_security_policy(
    csp: tuple[Any, CspWatch], page: Any, cluster: Cluster
) -> None:
    context, watch = csp
    # Logged out: the login page.
    anonymous = context.browser.new_context()
    anonymous_watch = CspWatch(anonymous)
    login = anonymous.new_page()
    response = login.goto(cluster.local.url + "/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(login.locator("#id_username")).to_be_visible()
    anonymous.close()
    assert anonymous_watch.problems() == []

    url = cluster.add_file("csp.bin", 100_000)
    done_id = cluster.api.post("/api/v1/tasks/", {"url": url})["id"]
    cluster.api.wait_for(done_id, {"completed"})
    pages = [
        "/",
        "/tasks/",
        "/tasks/?status=completed&sort=name",
        f"/tasks/{done_id}/",
        "/tasks/add/",
        "/workers/",
        "/keys/",
    ]
    for path in pages:
        response = page.goto(cluster.local.url + path)
        assert response.status == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, path
        assert "unsafe-inline" not in policy, path
        wait_live(page)
        page.wait_for_timeout(300)

    # HTMX swaps too: a refused form, a created key, a bulk action, a live refresh.
    page.goto(cluster.local.url + "/tasks/add/")
    page.fill("#id_uris", "gopher://old.example/f")
    page.click("#add-form button[type=submit]")
    expect(page.locator("#id_uris-err")).to_contain_text("line 1:")
    page.goto(cluster.local.url + "/keys/")
    page.fill("#k-name", "csp")
    page.click("button.primary >> text=Create")
    expect(page.locator(".secret")).to_be_visible()
    page.goto(cluster.local.url + "/tasks/")
    wait_live(page)
    fresh = cluster.api.post("/api/v1/tasks/", {"url": cluster.add_file("csp2.bin", 50_000)})
    expect(page.locator(f"#task-{fresh['id']} .badge")).to_have_text("completed", timeout=20_000)
    page.check(f"#sel-{fresh['id']}")
    page.click("#bulk-form button[value=retry]")
    expect(page.locator("#messages")).to_contain_text("cannot retry a task that is completed")
    screenshot(page, "tasks-after-bulk")
    assert watch.problems() == []
