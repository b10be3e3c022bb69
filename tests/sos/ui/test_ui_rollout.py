"""The rollout card in a real headless Chromium against a real `sos server` (fake backend,
its counted requests standing in for a router's): start one from the dialog, watch it,
stop it, and see why one rolled back."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sos_server import RunningServer
from sos_ui import sign_in

from sos import Rollout, traffic
from sos.runtime.fake import FakeBackend

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def shop(rollout_shop: RunningServer) -> RunningServer:
    return rollout_shop


def open_shop(page: Page, server: RunningServer) -> None:
    sign_in(page, server.url, server.admin_token)
    page.get_by_role("link", name="shop", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="shop")).to_be_visible()


def test_start_watch_and_stop_a_rollout_from_the_console(shop: RunningServer, page: Page) -> None:
    open_shop(page, shop)
    card = page.get_by_role("region", name="Rollout")
    expect(card).to_contain_text("No rollout yet")
    card.get_by_role("button", name="Start rollout…").click()
    dialog = page.get_by_role("dialog", name="Start a rollout of shop")
    dialog.get_by_label("Revision to roll out").select_option("shop-00002")
    dialog.get_by_label("Steps (percent)").fill("50,20")
    dialog.get_by_role("button", name="Start rollout").click()
    expect(dialog.get_by_role("alert")).to_contain_text("steps must rise")  # the server's word
    dialog.get_by_label("Steps (percent)").fill("20,100")
    dialog.get_by_label("Seconds per step").fill("600")
    dialog.get_by_role("button", name="Start rollout").click()
    expect(dialog).to_be_hidden()
    expect(card.locator("#rollout-state")).to_have_text(
        "Running: revision 00002 at 20%, step 1 of 2 (20% → 100%, every 600 s)."
    )
    expect(card.get_by_role("progressbar", name="Rollout progress")).to_be_visible()
    with shop.client() as admin:
        assert traffic.describe(admin.get_traffic("shop")) == "00002=20 00001=80"
    card.get_by_role("button", name="Stop rollout").click()
    expect(card.locator("#rollout-state")).to_have_text(
        "Last rollout stopped: revision 00002 at 20% (20% → 100%)."
    )
    expect(card.locator("#rollout-reason")).to_contain_text("stopped by admin")
    with shop.client() as admin:
        assert admin.get_rollout("shop").state == "stopped"


def test_a_rolled_back_rollout_says_what_tripped_it(shop: RunningServer, page: Page) -> None:
    backend = shop.state.backend
    assert isinstance(backend, FakeBackend)
    with shop.client() as admin:
        admin.start_rollout("shop", Rollout(to="2", step_seconds=600, max_error_rate=0.01))
    open_shop(page, shop)
    card = page.get_by_role("region", name="Rollout")
    expect(card.locator("#rollout-state")).to_contain_text("Running: revision 00002 at 10%")
    backend.serve("shop-00002", 30, errors=6)
    expect(card.locator("#rollout-state")).to_have_text(
        "Last rollout rolled back: revision 00002 at 0% (10% → 50% → 100%).", timeout=15_000
    )
    expect(card.locator("#rollout-reason")).to_contain_text("error rate 20.0% > 1.0%")
    expect(card.get_by_role("button", name="Start rollout…")).to_be_enabled()


def test_the_traffic_editor_sets_a_sticky_key_and_a_shadow(shop: RunningServer, page: Page) -> None:
    open_shop(page, shop)
    page.get_by_role("button", name="Edit traffic").click()
    dialog = page.get_by_role("dialog", name="Edit traffic of shop")
    dialog.get_by_label("Keep each user on one revision by").select_option("header")
    dialog.get_by_label("Name of the key").fill("X-User-Id")
    dialog.get_by_label("Mirror requests to").select_option("shop-00001")
    server = dialog.locator("#traffic-server")
    expect(server).to_contain_text("revision 00001 serves traffic already")  # the server's rule
    dialog.get_by_label("Mirror requests to").select_option("shop-00002")
    dialog.get_by_label("Share mirrored (%)").fill("50")
    expect(server).to_have_text("Checked by the server: ready to save.")
    dialog.get_by_role("button", name="Save traffic").click()
    expect(dialog).to_be_hidden()
    with shop.client() as admin:
        route = admin.get_traffic("shop")
    assert route.split_by == "header:X-User-Id"
    assert [(m.revision, m.percent) for m in route.shadow] == [("shop-00002", 50)]
    card = page.get_by_role("region", name="Shadow comparison")
    expect(card).to_contain_text("the fake backend does not mirror requests")
