"""Helpers of the browser tests: a page that records JavaScript errors, and screenshots kept under
the repository's test output."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, expect

logger = logging.getLogger(__name__)

#: Debian's Chromium (scripts/ensure_chromium.sh installs it); Playwright's own download cannot work here.
CHROMIUM = Path("/usr/bin/chromium")
#: A laptop screen.
VIEWPORT = {"width": 1366, "height": 850}
#: How long expect() waits for the page (the stack answers in milliseconds; this is slack, not a timing).
expect.set_options(timeout=20_000)


@contextmanager
def open_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A page in a fresh context; fails the test on an uncaught error or a console error."""
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))

    def console(message: ConsoleMessage) -> None:
        # A failed request is logged by the browser too; the tests that expect one say so.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(f"console: {message.text}")

    page.on("console", console)
    try:
        yield page
    finally:
        context.close()
    assert not errors, "the page had JavaScript errors:\n" + "\n".join(errors)


class Screenshots:
    """Saves full-page screenshots as <folder>/<name>.png and logs where."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, page: Page, name: str) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        logger.info("screenshot of %s: %s", page.url, path)
        print(f"screenshot: {path}")
        return path
