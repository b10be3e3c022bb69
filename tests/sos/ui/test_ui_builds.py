"""The Builds page: remote builds with their state, artifact and provenance, and one
build's steps and log."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sos_builds import build_server, make_builder, unpinned_project
from sos_server import RunningServer
from sos_ui import sign_in

from sos.build.errors import BuildFailedError
from sos.server.build_sandbox import BuilderEnvironment

PROJECTS = Path(__file__).parents[1] / "build" / "projects"


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> BuilderEnvironment:
    return make_builder(tmp_path_factory.mktemp("builder"))


@pytest.fixture
def server(sos_server: Callable[..., RunningServer], builder: BuilderEnvironment) -> RunningServer:
    return build_server(sos_server, builder)


def test_the_builds_page_lists_builds_and_shows_one_with_its_log(
    server: RunningServer, page: Page, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(PROJECTS / "command-app", broken)
    text = (broken / "pyproject.toml").read_text()
    (broken / "pyproject.toml").write_text(text.replace("tick-server", "broken-tick"))
    (broken / "tick" / "__main__.py").unlink()
    (broken / "tick" / "__init__.py").unlink()
    with server.client() as api:
        done = api.build(PROJECTS / "command-app")
        with pytest.raises(BuildFailedError):
            api.build(broken)
    sign_in(page, server.url, server.admin_token)
    page.get_by_role("link", name="Builds").click()
    expect(page.get_by_role("heading", level=1, name="Builds")).to_be_visible()
    good = page.locator(f"tr[data-build='{done.id}']")
    expect(good).to_contain_text("succeeded")
    expect(good).to_contain_text("tick-server 2.0.0")
    expect(good).to_contain_text(f"remote {done.builder}")
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("tbody tr").first).to_contain_text("failed")

    good.get_by_role("link", name=done.id).click()
    expect(page.get_by_role("heading", level=1, name=f"Build {done.id}")).to_be_visible()
    steps = page.get_by_role("list", name="Steps")
    expect(steps).to_contain_text("Inspect the project — done")
    log = page.get_by_label("Build log")
    expect(log).to_contain_text("== Package (shiv)")
    expect(log).to_contain_text("-- succeeded")


def test_a_build_page_shows_the_lock_it_resolved_and_what_it_said(
    server: RunningServer, page: Page, tmp_path: Path
) -> None:
    with server.client() as api:
        done = api.build(unpinned_project(tmp_path, "ranged-svc"))
    assert done.lock is not None and done.lock.written
    sign_in(page, server.url, server.admin_token)
    page.goto(f"{server.url}/ui/#/builds/{done.id}")
    line = page.locator("p[data-lock='requirements.lock']")
    expect(line).to_contain_text("resolved by this build")
    expect(page.get_by_role("list", name="Warnings")).to_contain_text("unpinned dependency (six)")
    line.get_by_role("button", name="Show").click()
    expect(page.get_by_label("requirements.lock")).to_contain_text("six==")
