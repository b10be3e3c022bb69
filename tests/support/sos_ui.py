"""Web UI test helpers: viewports, signing in as a person would, and screenshots kept under
``test-artifacts/ui/``. The page fixtures are in ``tests/sos/ui/conftest.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}

NewPage = Callable[..., Page]


def sign_in(page: Page, url: str, token: str) -> None:
    """Sign in as a person would: open the UI, paste the token, press Enter."""
    page.goto(f"{url}/ui/")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_label("Token", exact=True).press("Enter")
    expect(page.get_by_role("heading", level=1, name="Services")).to_be_visible()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
