"""Fixtures for the web UI tests: pages of headless Chromium (the ``browser`` fixture of
``tests/conftest.py``) that fail the test on any JavaScript error, signing in, and
screenshots kept under ``test-artifacts/ui/``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

SHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}

NewPage = Callable[..., Page]


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


def sign_in(page: Page, url: str, token: str) -> None:
    """Sign in as a person would: open the UI, paste the token, press Enter."""
    page.goto(f"{url}/ui/")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_label("Token", exact=True).press("Enter")
    expect(page.get_by_role("heading", level=1, name="Services")).to_be_visible()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
