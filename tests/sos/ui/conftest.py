"""Fixtures for the web UI tests: pages of headless Chromium (the ``browser`` fixture of
``tests/conftest.py``) that fail the test on any JavaScript error, signing in, and
screenshots kept under ``test-artifacts/ui/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page
from sos_ui import WIDE, NewPage


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """``new_page(viewport=NARROW)``: a fresh browser context (its own storage) per call."""
    contexts = []
    errors: list[str] = []

    def make(viewport: dict[str, int] | None = None) -> Page:
        context = browser.new_context(viewport=viewport or WIDE)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page: NewPage) -> Page:
    return new_page()
