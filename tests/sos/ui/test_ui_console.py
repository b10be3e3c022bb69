"""The web UI in a real headless Chromium against a real `sos server` (fake backend: these
pages need no running revisions): sign in, services and revisions, the traffic editor and
its validation, a stale edit, rollback with confirmation, read-only tokens, narrow windows."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from sos_server import RunningServer
from sos_ui import NARROW, NewPage, shot, sign_in

from sos.models import RevisionSpec, ServiceSpec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DIGEST_1 = "sha256:" + "1a" * 32
DIGEST_2 = "sha256:" + "2b" * 32


@pytest.fixture
def shop(sos_server: Callable[..., RunningServer]) -> RunningServer:
    """A server with service shop (team recs) and two revisions; revision 1 has 100%."""
    server = sos_server()
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs", description="Similar items"))
        for version, digest, note in [("1.0.0", DIGEST_1, ""), ("1.1.0", DIGEST_2, "faster")]:
            spec = {
                "artifact": {"name": "shop_app", "version": version, "digest": digest},
                "description": note,
            }
            admin.create_revision("shop", RevisionSpec.model_validate(spec))
        admin.wait_ready("shop", 2, timeout=30)
    return server


def open_service(page: Page, name: str = "shop") -> None:
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def route_of(server: RunningServer) -> list[tuple[str, int, str | None]]:
    with server.client() as admin:
        return [(r.revision, r.percent, r.tag) for r in admin.get_traffic("shop").routes]


def traffic_editor(page: Page) -> None:
    page.get_by_role("button", name="Edit traffic").click()
    expect(page.get_by_role("dialog", name="Edit traffic of shop")).to_be_visible()


# --------------------------------------------------------------------------- reading


def test_services_and_revision_history_are_shown_after_sign_in(
    shop: RunningServer, new_page: NewPage
) -> None:
    page = new_page()
    page.goto(f"{shop.url}/")  # the API port's root leads to the UI
    expect(page).to_have_url(f"{shop.url}/ui/")
    expect(page.get_by_role("heading", name="Sign in to SOS")).to_be_visible()
    shot(page, "sign-in-wide")
    page.get_by_label("Token", exact=True).fill("sos_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("does not know this token")

    sign_in(page, shop.url, shop.admin_token)
    row = page.locator("tr[data-service=shop]")
    expect(row).to_contain_text("recs")
    expect(row).to_contain_text("Ready")
    expect(row.get_by_role("img", name=re.compile("Traffic split"))).to_have_attribute(
        "aria-label", "Traffic split: 00001 100%"
    )
    expect(row).to_contain_text("http://shop.sos.invalid")
    expect(page.locator("#who")).to_contain_text("admin")
    shot(page, "services-wide")

    open_service(page)
    revisions = page.get_by_role("table", name="Revisions, newest first").locator("tbody tr")
    expect(revisions).to_have_count(2)
    newest = revisions.nth(0)
    expect(newest).to_contain_text("00002")
    expect(newest).to_contain_text("latest")
    expect(newest).to_contain_text("shop_app 1.1.0")
    expect(newest).to_contain_text("2b2b2b2b2b2b")  # the digest, shortened
    expect(newest).to_contain_text("by admin")
    expect(newest).to_contain_text("Ready")
    expect(newest).to_contain_text("0%")  # a new revision gets no traffic
    expect(revisions.nth(1)).to_contain_text("1 ready / 1 running")
    expect(revisions.nth(1)).to_contain_text("100%")
    changes = page.get_by_role("table", name="Recent changes")
    expect(changes).to_contain_text("Revision created")
    expect(changes).to_contain_text("revision 00002 created from artifact shop_app 1.1.0")
    shot(page, "service-wide")

    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("table", name="Change history").locator("tbody tr")).to_have_count(4)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to SOS")).to_be_visible()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0


def test_narrow_window_stacks_tables_and_keeps_every_fact(
    shop: RunningServer, new_page: NewPage
) -> None:
    page = new_page(viewport=NARROW)
    sign_in(page, shop.url, shop.admin_token)
    shot(page, "services-narrow")
    open_service(page)
    newest = page.locator("tr[data-revision=shop-00002]")
    expect(newest).to_contain_text("shop_app 1.1.0")
    page.get_by_label("Settings of revision 00002").click()
    expect(newest).to_contain_text("target concurrency 10")
    # no sideways scrolling: the page fits the phone's width
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    shot(page, "service-narrow")
    traffic_editor(page)
    shot(page, "traffic-editor-narrow")


# --------------------------------------------------------------------------- writing


def test_split_edited_in_the_ui_is_what_the_api_returns(shop: RunningServer, page: Page) -> None:
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    edit = page.get_by_role("button", name="Edit traffic")
    edit.focus()
    page.keyboard.press("Enter")  # keyboard users open it the same way
    dialog = page.get_by_role("dialog", name="Edit traffic of shop")
    expect(page.get_by_label("Percent of route 1")).to_be_focused()
    page.get_by_label("Percent of route 1").fill("50")
    dialog.get_by_role("button", name="+ Add route").click()
    page.get_by_label("Revision of route 2").select_option("shop-00002")
    page.get_by_label("Percent of route 2").fill("50")
    page.get_by_label("Tag of route 2 (optional)").fill("canary")
    expect(dialog.get_by_role("status")).to_contain_text("Valid")
    shot(page, "traffic-editor-wide")
    dialog.get_by_role("button", name="Save traffic").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toasts")).to_contain_text("Traffic of shop saved")

    assert route_of(shop) == [("shop-00001", 50, None), ("shop-00002", 50, "canary")]
    expect(
        page.get_by_role("img", name="Current split: 00001 50% · 00002 50% @canary")
    ).to_be_visible()
    expect(page.get_by_role("table", name="Traffic routes")).to_contain_text("canary")
    with shop.client() as admin:
        change = admin.history("shop", limit=1)[0]
    assert change.action == "traffic.changed" and change.actor == "admin"


def test_invalid_splits_are_explained_before_saving(shop: RunningServer, page: Page) -> None:
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    traffic_editor(page)
    dialog = page.get_by_role("dialog")
    messages = dialog.get_by_role("status")
    save = dialog.get_by_role("button", name="Save traffic")
    one = page.get_by_label("Percent of route 1")

    one.fill("90")
    expect(messages).to_contain_text("The percents add up to 90%; they must add up to 100%.")
    expect(save).to_be_disabled()
    expect(dialog.locator(".total")).to_have_text("90%")

    one.fill("12.5")
    expect(messages).to_contain_text("percent must be a whole number from 0 to 100, not “12.5”")
    expect(one).to_have_attribute("aria-invalid", "true")

    one.fill("60")
    dialog.get_by_role("button", name="+ Add route").click()
    page.get_by_label("Revision of route 2").select_option("shop-00002")
    page.get_by_label("Percent of route 2").fill("40")
    page.get_by_label("Tag of route 1 (optional)").fill("blue")
    page.get_by_label("Tag of route 2 (optional)").fill("blue")
    expect(messages).to_contain_text(
        "Tag “blue” is used by routes 1 and 2; each tag must be unique."
    )
    page.get_by_label("Tag of route 2 (optional)").fill("Green!")
    expect(messages).to_contain_text("tag “Green!” must be lowercase letters")
    expect(save).to_be_disabled()
    shot(page, "traffic-editor-invalid")

    page.get_by_label("Tag of route 2 (optional)").fill("green")
    expect(messages).to_have_text("Valid: the percents add up to 100%.")
    expect(one).not_to_have_attribute("aria-invalid", "true")
    expect(save).to_be_enabled()
    page.keyboard.press("Escape")  # cancel: nothing is sent
    expect(dialog).to_be_hidden()
    assert route_of(shop) == [("shop-00001", 100, None)]


def test_stale_edit_is_reported_with_who_changed_it_and_not_overwritten(
    shop: RunningServer, page: Page
) -> None:
    alice = shop.token("alice", role="writer", team="recs")
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    traffic_editor(page)
    page.get_by_label("Percent of route 1").fill("100")
    # meanwhile alice moves all traffic to revision 2 from her terminal
    with shop.client(alice) as client:
        client.set_traffic("shop", {2: 100})
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Save traffic").click()
    conflict = dialog.get_by_role("alert")
    expect(conflict).to_contain_text("shop was changed by alice meanwhile")
    expect(conflict).to_contain_text("traffic 00002=100")
    expect(conflict).to_contain_text("Nothing was saved")
    shot(page, "traffic-editor-stale")
    assert route_of(shop) == [("shop-00002", 100, None)]  # alice's change stands

    conflict.get_by_role("button", name="Reload current route").click()
    expect(page.get_by_label("Revision of route 1")).to_have_value("shop-00002")
    page.get_by_label("Percent of route 1").fill("80")
    dialog.get_by_role("button", name="+ Add route").click()
    page.get_by_label("Revision of route 2").select_option("shop-00001")
    page.get_by_label("Percent of route 2").fill("20")
    dialog.get_by_role("button", name="Save traffic").click()
    expect(dialog).to_be_hidden()
    assert route_of(shop) == [("shop-00002", 80, None), ("shop-00001", 20, None)]


def test_rollback_asks_first_then_restores_the_previous_route(
    shop: RunningServer, page: Page
) -> None:
    with shop.client() as admin:
        admin.set_traffic("shop", {2: 90, 1: 10})
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    page.get_by_role("button", name="Roll back…").click()
    dialog = page.get_by_role("dialog", name="Roll back shop?")
    expect(dialog.get_by_role("img", name="Current split: 00002 90% · 00001 10%")).to_be_visible()
    expect(dialog.get_by_role("img", name="Split after the rollback: 00001 100%")).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    shot(page, "rollback-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert route_of(shop) == [("shop-00002", 90, None), ("shop-00001", 10, None)]

    page.get_by_role("button", name="Roll back…").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(page.locator("#toasts")).to_contain_text("Rolled back shop")
    assert route_of(shop) == [("shop-00001", 100, None)]
    expect(page.get_by_role("img", name="Current split: 00001 100%")).to_be_visible()
    expect(page.get_by_role("table", name="Recent changes")).to_contain_text("Rolled back")


# --------------------------------------------------------------------------- read-only


def test_reader_sees_everything_but_every_change_is_visibly_off(
    shop: RunningServer, page: Page
) -> None:
    reader = shop.token("dashboards", role="reader", team="recs")
    sign_in(page, shop.url, reader)
    expect(page.locator("#banner")).to_contain_text("Read-only.")
    expect(page.locator("#who")).to_contain_text("reader")
    create = page.get_by_role("button", name="New service")
    expect(create).to_be_disabled()
    expect(create).to_have_attribute("aria-describedby", "ro-note")
    expect(page.locator("#ro-note")).to_contain_text("so it cannot create services")
    open_service(page)
    expect(page.locator("tr[data-revision]")).to_have_count(2)
    note = page.locator("#ro-note")
    expect(note).to_contain_text("has the reader role")
    for name in ("Edit traffic", "Roll back…", "New revision", "Delete service…"):
        button = page.get_by_role("button", name=name)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("aria-describedby", "ro-note")
    shot(page, "service-read-only")
    page.goto(f"{shop.url}/ui/#/services/shop/new-revision")  # typed in: still read-only
    expect(page.get_by_role("heading", level=1, name="New revision of shop")).to_be_visible()
    expect(page.locator("#ro-note")).to_contain_text("has the reader role")
    expect(page.get_by_role("button", name="Create revision")).to_be_disabled()
    page.goto(f"{shop.url}/ui/#/services/shop")
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("table", name="Change history")).to_contain_text("Service created")
    page.get_by_role("link", name="Metrics").click()
    expect(page.get_by_role("img", name=re.compile("^Instances"))).to_be_visible()


def test_writer_of_another_team_is_told_whose_service_it_is(
    shop: RunningServer, page: Page
) -> None:
    bob = shop.token("bob", role="writer", team="search")
    sign_in(page, shop.url, bob)
    open_service(page)
    expect(page.locator("#ro-note")).to_contain_text(
        "your token “bob” belongs to team search, and shop belongs to team recs"
    )
    for name in ("Edit traffic", "New revision", "Delete service…"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()


# --------------------------------------------------------------------------- the session


def test_token_stays_in_the_tab_unless_remembered_and_revoking_it_signs_out(
    shop: RunningServer, page: Page
) -> None:
    carol = shop.token("carol", role="writer", team="recs")
    sign_in(page, shop.url, carol)
    other_tab = page.context.new_page()
    other_tab.goto(f"{shop.url}/ui/")
    expect(other_tab.get_by_role("heading", name="Sign in to SOS")).to_be_visible()
    other_tab.close()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Token", exact=True).fill(carol)
    page.get_by_label("Remember me on this device").check()
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("carol")
    other_tab = page.context.new_page()
    other_tab.goto(f"{shop.url}/ui/#/services/shop")
    expect(other_tab.get_by_role("heading", level=1, name="shop")).to_be_visible()
    other_tab.close()

    with shop.client() as admin:
        admin.revoke_token("carol")
    # the next refresh (within 5 s) finds the token gone and says so
    expect(page.get_by_role("alert")).to_contain_text(
        "no longer accepts your token", timeout=15_000
    )
    expect(page.get_by_role("heading", name="Sign in to SOS")).to_be_visible()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0


def test_a_long_failure_message_keeps_the_table_layout(shop: RunningServer, page: Page) -> None:
    """One long failure message once widened the status column to 1,100 px and pushed
    traffic and URL off screen. It is one line now, with the whole text on hover."""
    from sos.runtime.fake import FakeBackend

    backend = shop.state.backend
    assert isinstance(backend, FakeBackend)
    message = "Traceback (most recent call last): " + "x" * 1500
    backend.fail("shop-00001", "CrashLoop", message)
    with shop.client() as admin:
        for _ in range(200):
            if admin.get_revision("shop", 1).status.failed:
                break
            page.wait_for_timeout(50)
    sign_in(page, shop.url, shop.admin_token)
    row = page.locator("tr[data-service=shop]")
    line = row.locator(".status-line")
    expect(line).to_be_visible()
    assert message[:40] in (line.get_attribute("title") or "")
    status_width = line.bounding_box()["width"]  # type: ignore[index]
    viewport = page.viewport_size["width"]  # type: ignore[index]
    assert status_width < viewport / 3
    url_cell = row.get_by_role("link", name=re.compile("shop"))
    expect(url_cell.first).to_be_visible()
    traffic = row.get_by_role("img", name=re.compile("Traffic split"))
    box = traffic.bounding_box()
    assert box is not None and box["x"] + box["width"] <= viewport  # still on screen


def test_traffic_to_a_failed_revision_needs_the_override_the_cli_has(
    shop: RunningServer, page: Page
) -> None:
    from sos.runtime.fake import FakeBackend

    backend = shop.state.backend
    assert isinstance(backend, FakeBackend)
    backend.fail("shop-00002", "CrashLoop", "ImportError: no module named 'model'")
    with shop.client() as admin:
        for _ in range(200):
            if admin.get_revision("shop", 2).status.failed:
                break
            page.wait_for_timeout(50)
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    traffic_editor(page)
    dialog = page.get_by_role("dialog", name="Edit traffic of shop")
    page.get_by_label("Percent of route 1").fill("90")
    dialog.get_by_role("button", name="+ Add route").click()
    page.get_by_label("Revision of route 2").select_option("shop-00002")
    page.get_by_label("Percent of route 2").fill("10")
    dialog.get_by_role("button", name="Save traffic").click()
    expect(dialog).to_contain_text("revision shop-00002 failed (CrashLoop")
    assert route_of(shop) == [("shop-00001", 100, None)]  # refused: nothing changed
    anyway = dialog.get_by_role("button", name="Save anyway")
    expect(anyway).to_be_disabled()  # not before the user confirms
    dialog.get_by_label(
        "I understand: the requests sent to 00002 will fail until it is fixed"
    ).check()
    anyway.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toasts")).to_contain_text("a failed revision gets some")
    assert route_of(shop) == [("shop-00001", 90, None), ("shop-00002", 10, None)]


def test_rules_that_need_the_service_come_from_the_server_before_saving(
    shop: RunningServer, page: Page
) -> None:
    """The editor checks what it can as the user types; what needs the service (two
    untagged routes to one revision) the server says, from a dry run, before Save."""
    sign_in(page, shop.url, shop.admin_token)
    open_service(page)
    traffic_editor(page)
    dialog = page.get_by_role("dialog")
    server = dialog.locator("#traffic-server")
    page.get_by_label("Percent of route 1").fill("60")
    dialog.get_by_role("button", name="+ Add route").click()
    page.get_by_label("Revision of route 2").select_option("shop-00001")
    page.get_by_label("Percent of route 2").fill("40")
    expect(server).to_have_text(
        "The server would refuse this route: revision shop-00001 has two untagged routes; "
        "merge them into one"
    )
    page.get_by_label("Revision of route 2").select_option("shop-00002")
    expect(server).to_have_text("Checked by the server: ready to save.")
    page.keyboard.press("Escape")
    assert route_of(shop) == [("shop-00001", 100, None)]  # the checks changed nothing
    with shop.client() as admin:
        assert [e.action for e in admin.history("shop")].count("traffic.changed") == 1
