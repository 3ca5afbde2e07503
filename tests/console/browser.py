"""Driving the console in Debian's Chromium with Playwright: a browser, a signed-in page, every
dialog (alert, confirm) recorded so a test can assert that none fired, and axe-core injected
from the vendored copy (``scripts/vendor-console``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CORRAL_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PAGES = ["overview", "instances", "models", "playground", "routing", "keys", "usage", "audit"]
VIEWPORT = {"width": 1440, "height": 900}


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; scripts/test installs it)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """One browser tab on the console, with what went wrong in it recorded."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=VIEWPORT, base_url=base)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # an API answer of 401/404 is the page's business (it shows it); a script error is not
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def sign_in(self, key: str) -> Console:
        self.page.goto("/console")
        self.page.get_by_label("Key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("navigation", name="Pages").wait_for()
        return self

    def open(self, name: str) -> Any:
        self.page.goto(f"/console#/{name}")
        self.page.locator(f'main[data-page="{name}"]').wait_for()
        return self.page

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical accessibility violations on the page as it is now."""
        # evaluated over the DevTools protocol, which the page's CSP does not govern (a script
        # tag would be an inline script, which the CSP rightly blocks)
        self.page.evaluate(AXE.read_text() + "\n;undefined")
        found: list[dict[str, Any]] = self.page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ["violations"]});
                return r.violations.filter(v => ["serious", "critical"].includes(v.impact))
                    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
            }"""
        )
        return found

    def close(self) -> None:
        self.context.close()
