"""The Secrets page: a team's writers create, rotate and delete secrets; values never come
back to the page; other teams are told why they cannot see them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from sos_server import RunningServer
from sos_ui import sign_in

from sos.models import Artifact, EnvVar, RevisionSpec, ServiceSpec

VALUE = "correct-horse-battery-staple"


@pytest.fixture
def recs(sos_server: Callable[..., RunningServer]) -> RunningServer:
    server = sos_server()
    with server.client() as admin:
        admin.apply(ServiceSpec(name="shop", team="recs"))
    return server


def test_a_team_writer_manages_its_secrets_and_never_sees_a_value_again(
    recs: RunningServer, page: Page
) -> None:
    sign_in(page, recs.url, recs.token("alice", role="writer", team="recs"))
    page.get_by_role("link", name="Secrets").click()
    expect(page.get_by_role("heading", level=1, name="Secrets of team recs")).to_be_visible()
    expect(page.locator("#main")).to_contain_text("Team recs has no secrets yet.")
    page.get_by_role("button", name="New secret").click()
    dialog = page.get_by_role("dialog", name="New secret of team recs")
    dialog.get_by_label("Name").fill("db-password")
    dialog.get_by_label("Value").fill(VALUE)
    dialog.get_by_role("button", name="Create secret").click()
    expect(page.locator("#toasts")).to_contain_text("Secret db-password created.")
    row = page.locator("tr[data-secret=db-password]")
    expect(row).to_contain_text("by alice")
    assert VALUE not in page.content()

    row.get_by_role("button", name="Rotate secret db-password").click()
    rotate = page.get_by_role("dialog", name="Rotate secret “db-password” of team recs")
    rotate.get_by_label("Value").fill(VALUE + "-2")
    rotate.get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#toasts")).to_contain_text("rotated (version 2)")
    assert recs.state.secrets is not None
    assert recs.state.secrets.values("recs", ["db-password"]) == {"db-password": VALUE + "-2"}

    # in use by the serving revision: the server refuses to delete it, and the page says so
    with recs.client() as admin:
        admin.create_revision(
            "shop",
            RevisionSpec(
                artifact=Artifact(name="a", version="1"),
                env_vars=[EnvVar(id="DB_PASSWORD", secret="db-password")],
            ),
        )
    row.get_by_role("button", name="Delete secret db-password").click()
    confirm = page.get_by_role("dialog", name="Delete secret “db-password”?")
    confirm.get_by_role("button", name="Delete secret").click()
    expect(confirm.get_by_role("alert")).to_contain_text("is used by shop-00001")


def test_another_team_is_told_it_cannot_see_them(recs: RunningServer, page: Page) -> None:
    with recs.client() as admin:
        admin.set_secret("db-password", VALUE, team="recs")
    sign_in(page, recs.url, recs.token("bob", role="writer", team="search"))
    page.goto(f"{recs.url}/ui/#/secrets?team=recs")
    expect(page.get_by_role("alert")).to_contain_text(
        "cannot read the secrets, which belong to team 'recs'"
    )
    expect(page.get_by_role("button", name="New secret")).to_be_disabled()
