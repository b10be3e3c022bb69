"""The explorer on the MovieLens service in headless Chromium: v1 and v2 for one user, side
by side (screenshot in test-artifacts/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import movielens_app
import movielens_operators as ml
import pytest
from playwright.sync_api import Browser, expect
from serving_helpers import ServerThread

from flight import register_provider

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,  # the browser: tests/conftest.py
    pytest.mark.slow,
    pytest.mark.skipif(not (ml.data_dir() / "ratings.csv").is_file(), reason="no MovieLens data"),
]


@pytest.fixture
def url() -> Iterator[str]:
    register_provider("movieId", ml.movie_attributes, replace=True)
    server = ServerThread(movielens_app.app).start()
    yield server.url
    server.stop()


def test_compare_v1_and_v2_for_a_user(url: str, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/explorer/?a=recommend_v1&b=recommend_v2&ctx.user_id=1")
        panes = page.locator("article.pane")
        expect(panes).to_have_count(2)
        v1, v2 = panes.nth(0), panes.nth(1)
        expect(v2.locator(".step-name", has_text="SimilarToRecent")).to_have_count(1)
        expect(v1.locator(".step-name", has_text="SimilarToRecent")).to_have_count(0)
        expect(v1.locator(".overlap")).to_contain_text("of 10 items also in recommend_v2")
        expect(v1.get_by_role("region", name="Answer of recommend_v1")).to_contain_text(
            "Terminator 2: Judgment Day (1991)"
        )
        expect(v2.get_by_role("region", name="Answer of recommend_v2")).to_contain_text(
            "Casablanca (1942)"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explorer-movielens-v1-v2.png"), full_page=True)
    finally:
        page.close()
