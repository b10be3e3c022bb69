"""Token management in the web UI (headless Chromium, real server): an admin lists tokens,
creates one (its secret shown once, copied with the button, and working), revokes one (and
revoking one's own token signs out); anyone else sees why they cannot."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sos_server import RunningServer
from sos_ui import NARROW, NewPage, shot, sign_in

from sos.client import Client
from sos.errors import AuthenticationError

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_tokens(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tokens").click()
    expect(page.get_by_role("heading", level=1, name="Tokens")).to_be_visible()


def test_admin_creates_a_token_copies_its_secret_once_and_revokes_it(
    server: RunningServer, page: Page
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    sign_in(page, server.url, server.admin_token)
    open_tokens(page)
    admin_row = page.locator("tr[data-token=admin]")
    expect(admin_row).to_contain_text("you")
    expect(admin_row).to_contain_text("admin")

    page.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog", name="Create a token")
    name = dialog.get_by_label("Name", exact=True)
    team = dialog.get_by_label("Team", exact=True)
    expect(name).to_be_focused()
    expect(dialog.get_by_label("Writer — changes the services of one team")).to_be_checked()
    submit = dialog.get_by_role("button", name="Create token")
    name.fill("ci recs")
    submit.click()
    expect(dialog.locator("#token-team-error")).to_have_text(
        "A writer token needs a team: the one team whose services it changes."
    )
    team.fill("recs")
    submit.click()  # the server's own words for a bad name, next to the field
    expect(dialog.locator("#token-name-error")).to_contain_text(
        "token name 'ci recs' may hold letters, digits, '.', '_', '@' and '-'"
    )
    dialog.get_by_label("Admin — changes everything and manages tokens").check()
    expect(team).to_be_disabled()
    dialog.get_by_label("Writer — changes the services of one team").check()
    team.fill("recs")
    name.fill("ci-recs")
    submit.click()

    shown = page.get_by_role("dialog", name="Token “ci-recs” created")
    secret = shown.get_by_label("Secret")
    expect(secret).to_be_focused()
    value = secret.input_value()
    expect(shown).to_contain_text("it is shown only this once")
    expect(shown).to_contain_text("ci-recs, writer of team recs")
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == value
    shot(page, "token-created")
    with Client(server.url, value) as ci:
        me = ci.whoami()
    assert (me.name, me.role, me.team) == ("ci-recs", "writer", "recs")
    shown.get_by_role("button", name="Done").click()
    expect(shown).to_be_hidden()
    row = page.locator("tr[data-token=ci-recs]")
    expect(row).to_contain_text("writer")
    expect(row).to_contain_text("recs")
    expect(row).to_contain_text("by admin")
    assert value not in page.content()  # shown once: gone with its dialog
    shot(page, "tokens-wide")

    row.get_by_role("button", name="Revoke token ci-recs").click()
    confirm = page.get_by_role("dialog", name="Revoke token “ci-recs”?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Revoke token").click()
    expect(page.locator("#toasts")).to_contain_text("Token ci-recs revoked.")
    expect(row).to_have_count(0)
    with Client(server.url, value) as ci, pytest.raises(AuthenticationError):
        ci.whoami()


def test_revoking_the_token_you_signed_in_with_signs_you_out(
    server: RunningServer, new_page: NewPage
) -> None:
    ops = server.token("ops", role="admin")
    page = new_page(viewport=NARROW)
    sign_in(page, server.url, ops)
    open_tokens(page)  # the main navigation stays reachable in a narrow window
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    shot(page, "tokens-narrow")
    page.locator("tr[data-token=ops]").get_by_role("button", name="Revoke token ops").click()
    confirm = page.get_by_role("dialog", name="Revoke token “ops”?")
    expect(confirm).to_contain_text("This is the token you are signed in with")
    confirm.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_role("heading", name="Sign in to SOS")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("no longer accepts your token")
    with server.client() as admin:
        assert "ops" not in {t.name for t in admin.list_tokens()}


@pytest.mark.parametrize(
    ("role", "team", "says"), [("reader", None, "the reader role"), ("writer", "recs", "team recs")]
)
def test_tokens_page_tells_non_admins_why_they_cannot_manage_tokens(
    server: RunningServer, page: Page, role: str, team: str | None, says: str
) -> None:
    token = server.token("dana", role=role, team=team)
    sign_in(page, server.url, token)
    open_tokens(page)
    note = page.locator("#ro-note")
    expect(note).to_contain_text("Only admin tokens manage tokens.")
    expect(note).to_contain_text(says)
    create = page.get_by_role("button", name="Create token")
    expect(create).to_be_disabled()
    expect(create).to_have_attribute("aria-describedby", "ro-note")
    expect(page.get_by_role("table", name="Tokens")).to_have_count(0)
