"""Creating and deleting in the web UI, in headless Chromium against a real server with its
artifact store (fake backend): a new service (and the API's own messages for bad fields),
a new revision picked from the pushed artifacts (the server's messages next to the fields,
as the user types and on saving), and deleting a service with its name typed out (and the
stale case)."""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sos_artifacts import make_artifact
from sos_harness import until
from sos_server import RunningServer
from sos_ui import NARROW, NewPage, shot, sign_in

from sos.errors import NotFoundError
from sos.models import (
    AppliedLimits,
    Artifact,
    ArtifactMetadata,
    Autoscaling,
    EnvVar,
    RevisionSpec,
    ServiceSpec,
)
from sos.runtime.base import ObservedService
from sos.server import artifacts as artifact_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def store(sos_server: Callable[..., RunningServer], tmp_path: Path) -> RunningServer:
    """A server with its artifact store, shop_app 1.0.0 (a Node app) and 1.1.0 (a Python WSGI
    app) pushed, and service shop (team recs) with one revision of 1.0.0 (target
    concurrency 7, MODEL=v1)."""
    server = sos_server()
    artifact_store.configure(server.state)  # as `sos server` does at start-up
    server.state.control.resolver = server.state.resolver
    with server.client() as admin:
        for version in ("1.0.0", "1.1.0"):
            data = f"console.log('shop {version}')".encode()
            if version == "1.1.0":
                zipped = io.BytesIO()
                with zipfile.ZipFile(zipped, "w") as archive:
                    archive.writestr("__main__.py", "print('shop 1.1.0')\n")
                data = zipped.getvalue()
            path = make_artifact(tmp_path, "shop_app", version, data)
            if version == "1.1.0":  # rewritten as a Python web app, served by gunicorn
                meta = path.with_name(path.name + ".json")
                python = ArtifactMetadata.model_validate_json(meta.read_text()).model_copy(
                    update={
                        "language": "python",
                        "runtime_version": "3.11",
                        "entry_point": "shop.web:app",
                        "extra": {"interface": "wsgi"},
                    }
                )
                meta.write_text(python.model_dump_json())
            admin.push_artifact(path)
        admin.apply(ServiceSpec(name="shop", team="recs", description="Similar items"))
        admin.create_revision(
            "shop",
            RevisionSpec(
                artifact=Artifact(name="shop_app", version="1.0.0"),
                env_vars=[EnvVar(id="MODEL", value="v1")],
                autoscaling=Autoscaling(target_concurrency=7),
            ),
        )
    return server


def api_message(server: RunningServer, method: str, path: str, body: object) -> str:
    """What the API itself answers to the same input (over plain HTTP)."""
    answer = httpx.request(
        method,
        f"{server.url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert answer.status_code == 422, answer.text
    return str(answer.json()["error"]["message"])


def open_shop_as_admin_with_alice_around(store: RunningServer, page: Page) -> str:
    """Sign in as admin and open shop; returns alice's token (a writer of team recs)."""
    alice = store.token("alice", role="writer", team="recs")
    sign_in(page, store.url, store.admin_token)
    page.get_by_role("link", name="shop", exact=True).click()
    return alice


def alice_deploys(store: RunningServer, alice: str) -> None:
    """Alice gives shop a new revision (from her terminal, while a dialog is open)."""
    with store.client(alice) as client:
        client.create_revision(
            "shop", RevisionSpec(artifact=Artifact(name="shop_app", version="1.1.0"))
        )


# --------------------------------------------------------------------------- services


def test_new_service_is_created_and_bad_names_get_the_apis_message(
    store: RunningServer, page: Page
) -> None:
    sign_in(page, store.url, store.admin_token)
    create = page.get_by_role("button", name="New service")
    create.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New service")
    name, team = dialog.get_by_label("Name"), dialog.get_by_label("Team")
    expect(name).to_be_focused()
    submit = dialog.get_by_role("button", name="Create service")

    submit.click()
    expect(dialog.locator("#service-name-error")).to_have_text("Enter a name for the service.")

    name.fill("Shop Two")
    team.fill("recs")
    submit.click()
    said = api_message(store, "PUT", "/services/x", {"name": "Shop Two", "team": "recs"})
    error = dialog.locator("#service-name-error")
    expect(error).to_contain_text("service name 'Shop Two' must be a DNS-1035 label")
    assert error.inner_text() in said  # the API's own words
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(dialog.get_by_role("alert")).to_contain_text("The service was not created.")
    shot(page, "new-service-invalid")

    name.fill("shop")  # taken: said, and the existing service is left alone
    submit.click()
    expect(error).to_have_text(
        "A service named shop already exists (team recs); pick another name."
    )
    with store.client() as admin:
        assert admin.get_service("shop").description == "Similar items"

    name.fill("shop-two")
    dialog.get_by_label("Description (optional)").fill("A second shop")
    submit.click()
    expect(page.get_by_role("heading", level=1, name="shop-two")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text("Service shop-two created")
    expect(page.locator("#main")).to_contain_text("No revisions yet")
    with store.client() as admin:
        made = admin.get_service("shop-two")
    assert (made.team, made.description, made.created_by) == ("recs", "A second shop", "admin")


def test_writer_creates_services_of_its_own_team(store: RunningServer, page: Page) -> None:
    alice = store.token("alice", role="writer", team="recs")
    sign_in(page, store.url, alice)
    page.get_by_role("button", name="New service").click()
    dialog = page.get_by_role("dialog", name="New service")
    expect(dialog.get_by_label("Team")).to_have_value("recs")
    expect(dialog.get_by_label("Team")).to_have_attribute("readonly", "")
    expect(dialog).to_contain_text("Your token “alice” creates services of team recs.")
    dialog.get_by_label("Name").fill("alices-shop")
    dialog.get_by_label("Name").press("Enter")
    expect(page.get_by_role("heading", level=1, name="alices-shop")).to_be_visible()
    with store.client() as admin:
        made = admin.get_service("alices-shop")
    assert (made.team, made.created_by) == ("recs", "alice")


def test_editing_a_service_saves_and_a_stale_edit_is_refused(
    store: RunningServer, page: Page
) -> None:
    alice = open_shop_as_admin_with_alice_around(store, page)
    page.get_by_role("button", name="Edit…").click()
    dialog = page.get_by_role("dialog", name="Edit shop")
    expect(dialog.get_by_label("Name")).to_have_attribute("readonly", "")
    description = dialog.get_by_label("Description (optional)")
    expect(description).to_be_focused()
    expect(description).to_have_value("Similar items")
    description.fill("Similar items, now with images")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".service-head")).to_contain_text("Similar items, now with images")
    with store.client() as admin:
        assert admin.get_service("shop").description == "Similar items, now with images"
        assert admin.history("shop", limit=1)[0].action == "service.updated"

    page.get_by_role("button", name="Edit…").click()
    dialog = page.get_by_role("dialog", name="Edit shop")
    dialog.get_by_label("Description (optional)").fill("mine")
    alice_deploys(store, alice)  # meanwhile
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("alert")).to_contain_text("shop was changed by alice meanwhile")
    with store.client() as admin:
        assert admin.get_service("shop").description == "Similar items, now with images"


# --------------------------------------------------------------------------- revisions


def open_new_revision(page: Page) -> None:
    page.get_by_role("link", name="shop", exact=True).click()
    page.get_by_role("button", name="New revision").click()
    expect(page.get_by_role("heading", level=1, name="New revision of shop")).to_be_visible()
    expect(page.get_by_label("Version")).to_have_value("1.1.0")  # the newest pushed


def test_new_revision_from_the_artifact_store_keeps_the_latest_settings(
    store: RunningServer, new_page: NewPage
) -> None:
    page = new_page()
    sign_in(page, store.url, store.admin_token)
    open_new_revision(page)
    # starts from revision 1's settings, and the schema's defaults for the rest
    expect(page.get_by_label("Target concurrency")).to_have_value("7")
    expect(page.get_by_label("Name of variable 1")).to_have_value("MODEL")
    expect(page.get_by_label("Maximum instances")).to_have_value("5")
    expect(page.locator("#autoscaling-max-scale-help")).to_contain_text("1 to 1000 · default 5")
    expect(page.locator(".artifact-facts")).to_contain_text("python 3.11 · shop.web:app")
    serving = page.get_by_role("heading", name="Serving (Python apps)")
    expect(serving).to_be_visible()
    # a Node artifact is not served by gunicorn: its settings are not offered (nor sent)
    page.get_by_label("Version").select_option("1.0.0")
    expect(page.locator(".artifact-facts")).to_contain_text("node 20 · server.js")
    expect(serving).to_be_hidden()
    page.get_by_label("Version").select_option("1.1.0")
    expect(serving).to_be_visible()
    shot(page, "new-revision-wide")

    page.get_by_label("Value of variable 1").fill("v2")
    page.get_by_role("button", name="+ Add variable").click()
    expect(page.get_by_label("Name of variable 2")).to_be_focused()
    page.get_by_label("Name of variable 2").fill("LOG_LEVEL")
    page.get_by_label("Value of variable 2").fill("debug")
    page.get_by_role("button", name="+ Add variable").click()  # left empty: no variable
    page.get_by_label("Memory").fill("256Mi")
    page.get_by_label("Port (optional)").fill("9000")
    page.get_by_label("Maximum instances").fill("3")
    page.get_by_label("Liveness probe path").fill("")  # off
    page.get_by_label("Readiness probe path").fill("/healthz")
    page.get_by_label("Worker class").select_option("gthread")
    page.get_by_label("Threads per worker").fill("4")
    page.get_by_text("More settings").first.click()
    page.get_by_label("Scale-down delay (s)").fill("15")
    page.get_by_label("Description (optional)").fill("faster model")
    page.get_by_role("button", name="Create revision").click()

    expect(page.get_by_role("heading", level=1, name="shop")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text(
        "Revision 00002 created. It gets no traffic until you split it"
    )
    expect(page.locator("tr[data-revision=shop-00002]")).to_contain_text("shop_app 1.1.0")
    with store.client() as admin:
        rev = admin.get_revision("shop", 2)
        pushed = admin.get_artifact("shop_app", "1.1.0")
        traffic = admin.get_traffic("shop")
    assert (rev.artifact.version, rev.artifact.digest) == ("1.1.0", pushed.digest)
    assert [(e.id, e.value) for e in rev.env_vars] == [("MODEL", "v2"), ("LOG_LEVEL", "debug")]
    assert (rev.resources.memory, rev.resources.cpu) == ("256Mi", None)
    assert rev.port == 9000
    assert (rev.autoscaling.max_scale, rev.autoscaling.scale_down_delay_seconds) == (3, 15)
    assert rev.autoscaling.target_concurrency == 7  # kept from revision 1
    assert (rev.health_check.liveness_probe, rev.health_check.readiness_probe) == (
        None,
        "/healthz",
    )
    assert (rev.gunicorn_config.worker_class, rev.gunicorn_config.thread_count) == ("gthread", 4)
    assert (rev.description, rev.created_by) == ("faster model", "admin")
    assert [(r.revision, r.percent) for r in traffic.routes] == [("shop-00001", 100)]

    # what `sos revision show` prints, folded under each revision; and a revision from it
    page.get_by_label("Settings of revision 00002").click()
    settings = page.locator("tr[data-revision=shop-00002] .rev-settings dl")
    for says in [
        "MODEL=v2",
        "LOG_LEVEL=debug",
        "memory 256Mi, cpu no limit",
        "9000",
        "0..3 instances, target concurrency 7 (initially 1)",
        "liveness off, readiness /healthz",
        "1 worker(s) x 4 thread(s), class gthread",
    ]:
        expect(settings).to_contain_text(says)
    shot(page, "revision-settings")
    page.get_by_label("Settings of revision 00001").click()
    page.locator("tr[data-revision=shop-00001]").get_by_role(
        "link", name="New revision from these settings"
    ).click()
    expect(page.locator("#main")).to_contain_text("starting from the settings of 00001 (chosen)")
    expect(page.get_by_label("Value of variable 1")).to_have_value("v1")
    expect(page.get_by_label("Name of variable 2")).to_have_count(0)

    narrow = new_page(viewport=NARROW)
    sign_in(narrow, store.url, store.admin_token)
    open_new_revision(narrow)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    shot(narrow, "new-revision-narrow")


def test_a_revisions_settings_say_what_memory_it_runs_with_when_it_sets_none(
    store: RunningServer, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(page, store.url, store.admin_token)
    page.get_by_role("link", name="shop", exact=True).click()
    page.get_by_label("Settings of revision 00001").click()
    settings = page.locator("tr[data-revision=shop-00001] .rev-settings dl")
    # the fake backend does not say what its instances run with: nor does the page
    expect(settings).to_contain_text("memory not set, cpu no limit")
    # a backend that gives a revision without a limit its default (the local runtime) says so
    backend = store.state.backend
    observe = backend.observe

    async def with_the_default(name: str) -> ObservedService | None:
        observed = await observe(name)
        if observed is None:
            return None
        limits = AppliedLimits(memory="1Gi", memory_source="server-default")
        revisions = {
            k: dataclasses.replace(r, limits=limits) for k, r in observed.revisions.items()
        }
        return dataclasses.replace(observed, revisions=revisions)

    monkeypatch.setattr(backend, "observe", with_the_default)
    assert backend.on_change is not None
    backend.on_change("shop")
    with store.client() as admin:
        until(lambda: admin.get_revision("shop", 1).status.limits is not None, 10, "status")
    page.reload()
    page.get_by_label("Settings of revision 00001").click()
    expect(settings).to_contain_text("memory not set: 1Gi, the server's default, cpu no limit")


def test_new_revision_shows_the_servers_messages_next_to_the_fields(
    store: RunningServer, page: Page
) -> None:
    sign_in(page, store.url, store.admin_token)
    open_new_revision(page)
    page.get_by_label("Name of variable 1").fill("1BAD")
    page.get_by_role("button", name="+ Add variable").click()
    page.get_by_label("Name of variable 2").fill("PORT")
    page.get_by_label("Memory").fill("lots")
    page.get_by_label("Minimum instances").fill("9")
    page.get_by_label("Maximum instances").fill("2")
    page.get_by_label("Threads per worker").fill("four")
    # checked as the user types (the server's dry run), before anything is sent for real
    status = page.locator("#check-status")
    expect(status).to_have_text("Not valid yet: 5 problems, marked above.")
    expect(page.locator("#resources-memory-error")).to_contain_text("'lots' is not a quantity")
    expect(page.get_by_role("alert")).to_be_hidden()
    page.get_by_role("button", name="Create revision").click()

    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("The revision was not created.")
    expect(summary).to_contain_text("The server found 5 problems")
    expected = {
        "#env-0-id-error": "environment variable name '1BAD' must be letters, digits and '_'",
        "#env-1-id-error": "environment variable 'PORT' is set by the platform",
        "#resources-memory-error": "memory: 'lots' is not a quantity",
        "#gunicorn-config-thread-count-error": "Input should be a valid integer",
    }
    for where, says in expected.items():
        expect(page.locator(where)).to_contain_text(says)
    expect(page.locator("#autoscaling-error")).to_contain_text(
        "min_scale (9) is above max_scale (2); lower min_scale or raise max_scale"
    )
    expect(page.get_by_label("Name of variable 1")).to_be_focused()  # the first problem
    expect(page.get_by_label("Memory")).to_have_attribute("aria-invalid", "true")
    shot(page, "new-revision-invalid")
    # the same words as the API gives the client for the same mistakes
    bad = {"artifact": {"name": "shop_app", "version": "1.1.0"}, "resources": {"memory": "lots"}}
    said = api_message(store, "POST", "/services/shop/revisions", bad)
    assert page.locator("#resources-memory-error").inner_text() in said
    with store.client() as admin:
        assert len(admin.list_revisions("shop")) == 1  # nothing was created

    page.get_by_label("Name of variable 1").fill("MODEL")
    page.get_by_role("button", name="Remove variable 2").click()
    page.get_by_label("Memory").fill("1Gi")
    page.get_by_label("Minimum instances").fill("1")
    page.get_by_label("Threads per worker").fill("2")
    expect(status).to_have_text("Checked by the server: ready to create.")
    expect(page.locator(".field-error:visible")).to_have_count(0)
    page.get_by_role("button", name="Create revision").click()
    expect(page.locator("#toasts")).to_contain_text("Revision 00002 created")
    with store.client() as admin:
        assert admin.get_revision("shop", 2).resources.memory == "1Gi"


# --------------------------------------------------------------------------- delete


def test_deleting_a_service_needs_its_name_typed_and_keeps_its_history(
    store: RunningServer, page: Page
) -> None:
    sign_in(page, store.url, store.admin_token)
    page.get_by_role("link", name="shop", exact=True).click()
    page.get_by_role("button", name="Delete service…").click()
    dialog = page.get_by_role("dialog", name="Delete shop?")
    expect(dialog).to_contain_text("its revision and its traffic route")
    confirm = dialog.get_by_label("Type shop to confirm")
    expect(confirm).to_be_focused()
    delete = dialog.get_by_role("button", name="Delete service")
    expect(delete).to_be_disabled()
    confirm.fill("sho")
    expect(delete).to_be_disabled()
    confirm.fill("shop")
    expect(delete).to_be_enabled()
    shot(page, "delete-service-confirm")
    confirm.press("Enter")

    expect(page.get_by_role("heading", level=1, name="Services")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text("Service shop deleted.")
    expect(page.locator("tr[data-service=shop]")).to_have_count(0)
    with store.client() as admin:
        with pytest.raises(NotFoundError):
            admin.get_service("shop")
        assert admin.history("shop", limit=1)[0].action == "service.deleted"


def test_deleting_a_service_changed_meanwhile_is_refused_and_says_by_whom(
    store: RunningServer, page: Page
) -> None:
    alice = open_shop_as_admin_with_alice_around(store, page)
    page.get_by_role("button", name="Delete service…").click()
    dialog = page.get_by_role("dialog", name="Delete shop?")
    dialog.get_by_label("Type shop to confirm").fill("shop")
    alice_deploys(store, alice)  # meanwhile
    dialog.get_by_role("button", name="Delete service").click()
    problem = dialog.get_by_role("alert")
    expect(problem).to_contain_text("shop was changed by alice meanwhile")
    expect(problem).to_contain_text(re.compile("revision 00002 created.*Nothing was deleted"))
    with store.client() as admin:
        assert len(admin.list_revisions("shop")) == 2


def test_a_secret_variable_stays_a_secret_reference_through_the_form(
    store: RunningServer, page: Page
) -> None:
    with store.client() as admin:
        admin.set_secret("db-password", "hunter2", team="recs")
        admin.create_revision(
            "shop",
            RevisionSpec(
                artifact=Artifact(name="shop_app", version="1.1.0"),
                env_vars=[EnvVar(id="DB_PASSWORD", secret="db-password")],
            ),
        )
    sign_in(page, store.url, store.admin_token)
    page.get_by_role("link", name="shop", exact=True).click()
    page.get_by_label("Settings of revision 00002").click()
    settings = page.locator("tr[data-revision=shop-00002] .rev-settings dl")
    expect(settings).to_contain_text("DB_PASSWORD from secret db-password")
    page.get_by_role("button", name="New revision").click()
    secret = page.get_by_label("Secret of variable 1 (its name; sos secret set)")
    expect(secret).to_have_value("db-password")
    page.get_by_role("button", name="+ Add secret").click()
    page.get_by_label("Name of variable 2").fill("API_KEY")
    page.get_by_label("Secret of variable 2 (its name; sos secret set)").fill("api-key")
    page.get_by_role("button", name="Create revision").click()
    # a secret the team does not have is the server's 422, next to the field
    expect(page.get_by_role("alert")).to_contain_text("The revision was not created")
    expect(page.locator("#env-error")).to_contain_text("team 'recs' has no secret 'api-key'")
    page.get_by_role("button", name="Remove variable 2").click()
    page.get_by_role("button", name="Create revision").click()
    expect(page.locator("#toasts")).to_contain_text("Revision 00003 created")
    with store.client() as admin:
        env = admin.get_revision("shop", 3).env_vars
    assert [(v.id, v.value, v.secret) for v in env] == [("DB_PASSWORD", "", "db-password")]
    assert "hunter2" not in page.content()
