"""The debug explorer in a real browser (headless Chromium driven by Playwright): pick a
pipeline, enter the context, run with debug, read the funnel and the items at each step,
compare two pipelines side by side; labelled controls, keyboard use, a narrow window.
Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, expect
from serving_helpers import ServerThread

import flight
import flight.operators as fo
from flight import Pipeline, TableProvider, register_provider

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # the browser: tests/conftest.py

Serve = Callable[[Any], ServerThread]

GENRES = ["Drama", "Comedy", "Action", "Horror"]
CATALOGUE = pd.DataFrame(
    {
        "item": list(range(1, 41)),
        "title": [f"Film number {i}" for i in range(1, 41)],
        "genre": [GENRES[i % 4] for i in range(1, 41)],
        "rating": [round(2.0 + (i * 7 % 30) / 10, 1) for i in range(1, 41)],
    }
)


class Catalogue(fo.SourceOperator):
    """Every film, with its popularity."""

    n: int = 40

    async def __call__(self, **ctx: Any) -> fo.Source:
        ids = list(range(1, self.n + 1))
        return fo.Source(pd.DataFrame({"item": ids, "popularity": [1.0 / i for i in ids]}))


class Seen(fo.SourceOperator):
    """What the user has seen: every ``user_id``-th film."""

    async def __call__(self, user_id: int) -> fo.Source:
        return fo.Source(list(range(user_id, 41, max(user_id, 1))))


POPULAR = Pipeline("popular", item_type="item", description="Most popular films").initialize(
    includes=[Catalogue()], excludes=[Seen()]
) | [fo.Hydrate(["title", "genre", "rating"]), fo.Sort("popularity", desc=True), fo.Head(5)]
TOP_RATED = Pipeline("top_rated", item_type="item", description="Best rated films").initialize(
    includes=[Catalogue()], excludes=[Seen()]
) | [
    fo.Hydrate(["title", "genre", "rating"]),
    fo.Threshold("rating", min=3.0),
    fo.Sort("rating", desc=True),
    fo.Head(5),
]


@pytest.fixture
def url(serve: Serve) -> str:
    register_provider(TableProvider(CATALOGUE, key="item"), replace=True)
    app = flight.App("explorer-test", debug=True)
    app.serve_pipeline(POPULAR)
    app.serve_pipeline(TOP_RATED)
    return serve(app).url + "/explorer/"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"explorer-{name}.png"), full_page=True)


def test_run_one_pipeline_and_read_its_funnel(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#pipeline-a option")).to_have_count(2)
    page.get_by_label("Pipeline", exact=True).select_option("top_rated")
    expect(page.locator("#about-a")).to_contain_text("Best rated films")
    user = page.get_by_label("user_id")
    expect(user).to_have_attribute("required", "")
    user.fill("4")
    page.get_by_role("button", name="Run with debug").click()
    pane = page.locator("article.pane")
    expect(pane).to_have_count(1)
    expect(pane.get_by_role("heading", level=2)).to_contain_text("top_rated")
    steps = pane.locator("ol.funnel > li")
    names = steps.locator(".step-name").all_inner_texts()
    assert names == ["Catalogue", "Seen", "Candidates", "Hydrate", "Threshold", "Sort", "Head"]
    # user 4 has seen films 4, 8, ..., 40: 30 candidates left
    expect(steps.nth(1).locator(".n")).to_have_text("returned 10 to exclude")
    expect(steps.nth(2).locator(".counts")).to_have_text("30 items")
    unseen = CATALOGUE[CATALOGUE["item"] % 4 != 0]
    kept = int((unseen["rating"] >= 3.0).sum())
    threshold = steps.nth(4)
    expect(threshold.locator(".n")).to_have_text(f"30 in → {kept} out")
    expect(threshold.locator(".time")).to_contain_text("ms")
    # the items at a step, hydrated with titles
    hydrate = steps.nth(3)
    hydrate.locator("summary").click()
    table = hydrate.locator("table")
    expect(table.locator("tbody tr")).to_have_count(30)
    expect(table.locator("thead th")).to_have_text(
        ["item", "popularity", "title", "genre", "rating"]
    )
    expect(table).to_contain_text("Film number 1")
    answer = pane.get_by_role("region", name="Answer of top_rated")
    expect(answer.locator("tbody tr")).to_have_count(5)
    expect(page.get_by_role("status")).to_contain_text("Ran top_rated")
    shot(page, "single")


def test_compare_two_pipelines_side_by_side(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_label("Compare with a second pipeline").check()
    page.get_by_label("Pipeline", exact=True).select_option("popular")
    page.get_by_label("Second pipeline", exact=True).select_option("top_rated")
    expect(page.locator("#about-b")).to_contain_text("Best rated films")
    page.get_by_label("user_id").fill("3")
    page.get_by_role("button", name="Run with debug").click()
    panes = page.locator("article.pane")
    expect(panes).to_have_count(2)
    expect(panes.nth(0).get_by_role("heading", level=2)).to_contain_text("popular")
    expect(panes.nth(1).get_by_role("heading", level=2)).to_contain_text("top_rated")
    first, second = panes.nth(0).bounding_box(), panes.nth(1).bounding_box()
    assert first and second and second["x"] > first["x"] + first["width"] - 1  # side by side
    # the overlap is spelled out and items only in one answer are marked
    expect(panes.nth(0).locator(".overlap")).to_contain_text("also in top_rated")
    marked = panes.nth(0).locator("tr.only")
    assert marked.count() >= 1
    expect(panes.nth(0).locator(".overlap")).to_contain_text(f"{marked.count()} only here")
    # the state is in the URL, so the comparison can be shared
    assert "a=popular" in page.url and "b=top_rated" in page.url and "ctx.user_id=3" in page.url
    shot(page, "compare")


def test_shared_link_reruns_the_comparison(page: Page, url: str) -> None:
    page.goto(url + "?a=top_rated&b=popular&ctx.user_id=5")
    expect(page.locator("article.pane")).to_have_count(2)
    expect(page.get_by_label("user_id")).to_have_value("5")


def test_narrow_window_stacks_panes_without_sideways_scrolling(browser: Browser, url: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(url + "?a=popular&b=top_rated&ctx.user_id=2")
        panes = page.locator("article.pane")
        expect(panes).to_have_count(2)
        first, second = panes.nth(0).bounding_box(), panes.nth(1).bounding_box()
        assert first and second and second["y"] >= first["y"] + first["height"]  # stacked
        page.locator("article.pane details summary").first.click()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        shot(page, "narrow")
    finally:
        context.close()


def test_controls_are_labelled_and_work_from_the_keyboard(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#pipeline-a option")).to_have_count(2)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => !el.hidden && !el.closest('[hidden]'))
            .filter((el) => el.tagName === 'BUTTON'
                ? !el.textContent.trim()
                : !(el.labels && el.labels.length))
            .map((el) => el.id || el.name)"""
    )
    assert unlabelled == []
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.get_by_role("main")).to_have_count(1)
    # a missing required value is announced, not sent
    page.get_by_role("button", name="Run with debug").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter user_id")
    # type the value and submit with Enter
    page.get_by_label("user_id").focus()
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    expect(page.locator("article.pane")).to_have_count(1)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_failing_run_shows_the_error(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_label("user_id").fill("1")
    page.get_by_label("Budget").fill("0.0001")
    page.get_by_role("button", name="Run with debug").click()
    pane = page.locator("article.pane")
    expect(pane).to_have_count(1)
    expect(pane).to_contain_text("HTTP")


def test_a_logged_request_is_replayed_and_a_missing_item_explained(page: Page, url: str) -> None:
    """Paste a line of the request log: the explorer reruns it, shows what was served then,
    and says which step removed an item the user expected."""
    page.goto(url)
    expect(page.locator("#pipeline-a option")).to_have_count(2)
    page.get_by_text("Replay a logged request").click()
    logged = (
        '{"pipeline": "top_rated", "version": "abc123", "context": {"user_id": 7}, "items": [5, 9]}'
    )
    page.get_by_label("A line of the request log").fill(logged)
    page.get_by_role("button", name="Load and run it").click()
    expect(page.get_by_role("status")).to_contain_text("Ran top_rated")
    expect(page.locator("[data-served]")).to_contain_text("Served then (version abc123): 5, 9")
    why = page.get_by_label("Why is this item not in the answer?")
    why.fill("7")  # user 7 has seen film 7: the exclude removed it
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#why-answer")).to_contain_text("excluded by Seen")
    rating_of_1 = float(CATALOGUE.loc[CATALOGUE["item"] == 1, "rating"].iloc[0])
    assert rating_of_1 < 3.0  # film 1 is below the threshold
    why.fill("1")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#why-answer")).to_contain_text("removed by Threshold")
    why.fill("999")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#why-answer")).to_contain_text("no source returned it")
    page.get_by_label("A line of the request log").fill("not json")
    page.get_by_role("button", name="Load and run it").click()
    expect(page.locator("#form-error")).to_contain_text("not JSON")
    shot(page, "replay-why")
