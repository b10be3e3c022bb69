"""Headless Chromium for the browser tests and benchmarks: Debian's ``chromium`` driven by
Playwright (``playwright install`` cannot download browsers here; ``scripts/setup``
apt-installs chromium). One place for the binary and its flags; the ``browser`` fixture in
``tests/conftest.py`` uses it, and tests marked ``browser`` skip, saying why, without it.
"""

from __future__ import annotations

import shutil

from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "launch", "missing"]

CHROMIUM = "/usr/bin/chromium"
#: no sandbox (tests may run as root in a container), no GPU, and nothing that phones home
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if shutil.which(CHROMIUM) is None:
        return f"needs Debian's chromium at {CHROMIUM} (scripts/setup installs it)"
    return None


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
    )
