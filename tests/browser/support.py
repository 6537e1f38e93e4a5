"""Shared pieces of the browser tests: Debian's Chromium, login, CSP watching, screenshots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import Cluster, dump_logs, running_cluster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(os.environ.get("ARIACLUSTER_SCREENSHOTS", "/tmp/ariacluster-screenshots"))

# Reports every CSP violation of every document (including after navigations) to the test.
_CSP_SCRIPT = """
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolation(event.violatedDirective + " blocked " + (event.blockedURI || "inline")
    + " on " + event.documentURI + " by " + (event.sourceFile || "the document") + ":"
    + event.lineNumber + ":" + event.columnNumber + (event.sample ? " " + event.sample : ""));
});
"""


class CspWatch:
    """Collects CSP violations of a browser context: the DOM events and the console errors."""

    def __init__(self, context: Any) -> None:
        self.violations: list[str] = []
        self.console: list[str] = []
        context.expose_function("__cspViolation", self._violation)
        context.add_init_script(_CSP_SCRIPT)
        context.on("page", self.watch)

    def _violation(self, text: str) -> None:
        self.violations.append(text)

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and (
            "Content Security Policy" in text or "Content-Security-Policy" in text
        ):
            self.console.append(text)

    def problems(self) -> list[str]:
        return self.violations + self.console


def log_in(page: Any, base_url: str, user: str, password: str) -> None:
    page.goto(base_url + "/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def mark_page(page: Any) -> None:
    """Tag the loaded document; a reload would lose the tag."""
    page.evaluate("document.documentElement.dataset.testMark = 'kept'")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("document.documentElement.dataset.testMark") == "kept"


def wait_live(page: Any) -> None:
    page.wait_for_selector("body[data-live-connected=true]", state="attached", timeout=15_000)


def screenshot(page: Any, name: str) -> None:
    """Light and dark full-page shots. `caret="initial"`: Playwright's caret hiding would leave
    an empty `style` attribute on inputs, which htmx copies when swapping (a CSP violation the
    app never causes)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(SHOTS / f"{name}-{scheme}.png"), full_page=True, caret="initial")
    page.emulate_media(color_scheme="light")


@contextmanager
def staffed_cluster(base: Path, *, workers: int, user: str, password: str) -> Iterator[Cluster]:
    """A running cluster (tests/support/e2e.py) with one staff login; logs printed on failure."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    with running_cluster(base, workers=workers) as running:
        running.local.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; "
            f"User.objects.create_user({user!r}, password={password!r}, is_staff=True)",
        )
        try:
            yield running
        except Exception:
            print(dump_logs(base))
            raise


@contextmanager
def launched_chromium(playwright_sync: Any) -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser build)."""
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
