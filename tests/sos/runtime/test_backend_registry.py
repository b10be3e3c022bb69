"""The backend registry (``sos.runtime.registry``) and the server plug-ins: built-ins known
without a reinstall, plug-ins found by entry points of a separately installed package,
clear errors for an unknown backend, an unknown option or another backend's flag."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from dists import install, run
from typer.testing import CliRunner

from sos.cli import _load_commands, app
from sos.errors import ValidationError
from sos.runtime import registry
from sos.runtime.fake import FakeBackend
from sos.runtime.knative.settings import KnativeSettings
from sos.runtime.local.options import LocalOptions
from sos.runtime.registry import (
    BackendContext,
    BackendOptions,
    BackendPlugin,
    backend_names,
    create_backend,
    get_backend,
    register_backend,
)

ACME = """
    from typing import ClassVar

    from pydantic import field_validator

    from sos.runtime.fake import FakeBackend
    from sos.runtime.registry import BackendFlag, BackendOptions, BackendPlugin

    class AcmeOptions(BackendOptions):
        label: ClassVar[str] = "acme"
        env: ClassVar[dict[str, str]] = {"colour": "ACME_COLOUR"}
        colour: str = "red"
        size: int = 1

    def create(context):
        options = AcmeOptions.parse(context.options)
        return FakeBackend(domain=f"{options.colour}.{options.size}.acme")

    PLUGIN = BackendPlugin(
        name="acme",
        factory="acme_backend_impl:create",
        options=AcmeOptions,
        flags=(BackendFlag("--acme-colour", "colour", "The colour."),),
    )
"""

ROUTES = """
    from fastapi import APIRouter

    from sos.server.auth import Principal

    router = APIRouter(prefix="/acme")

    @router.get("")
    def hello(token: Principal):
        return {"hello": "acme"}

    def configure(state):
        state.extra["acme"] = "configured"
"""


_load_commands()


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    install(
        tmp_path,
        "acme_sos",
        """
        [sos.backends]
        acme = acme_backend:PLUGIN
        local = somewhere_else:PLUGIN

        [sos.server_plugins]
        acme = acme_routes
        """,
        {
            "acme_backend": ACME,
            "acme_backend_impl": "from acme_backend import create  # noqa: F401\n",
            "acme_routes": ROUTES,
        },
    )
    return tmp_path


@pytest.fixture
def registered() -> Iterator[None]:
    yield
    registry._registered.clear()


def test_the_built_in_backends_are_known_without_a_reinstall() -> None:
    assert {"fake", "local", "knative"} <= set(backend_names())
    assert get_backend("local").options is LocalOptions
    assert get_backend("knative").options is KnativeSettings
    assert [flag.flag for flag in get_backend("local").flags] == ["--router-port", "--router"]


def test_choosing_a_backend_imports_its_options_not_its_implementation(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "-c",
        "import sys; from sos.runtime.registry import get_backend; "
        "[get_backend(n).flags for n in ('local', 'knative')]; "
        "print(sorted(m for m in sys.modules if m in ('sos.runtime.local.backend', "
        "'sos.runtime.knative.backend', 'kubernetes')))",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_an_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"unknown backend 'nope': choose one of .*fake"):
        create_backend("nope", BackendContext(data_dir=tmp_path))


@pytest.mark.parametrize(
    ("backend", "valid"),
    [("fake", "domain"), ("local", "router_port, router_host"), ("knative", "namespace")],
)
def test_an_unknown_option_is_refused_naming_the_valid_ones(
    tmp_path: Path, backend: str, valid: str
) -> None:
    with pytest.raises(ValidationError, match=f"option.*colour.*: use {valid}"):
        create_backend(backend, BackendContext(data_dir=tmp_path, options={"colour": "red"}))


def test_options_come_from_the_flag_else_the_environment_else_the_default() -> None:
    env = {"SOS_ROUTER_PORT": "9000", "SOS_KEEP_INSTANCES": "yes"}
    assert LocalOptions.parse({}, env).router_port == 9000
    assert LocalOptions.parse({"router_port": "0"}, env).router_port == 0
    assert LocalOptions.parse({"router-port": "1"}, env).router_port == 1
    assert LocalOptions.parse({}, env).keep_instances
    assert LocalOptions.parse({}, {}).router_port == 8080
    with pytest.raises(ValidationError, match=r"--backend-opt router_port / SOS_ROUTER_PORT"):
        LocalOptions.parse({"router_port": "70000"}, {})
    with pytest.raises(ValidationError, match=r"sandbox_processes=3: must be a whole number"):
        LocalOptions.parse({"sandbox_processes": "3"}, {})


def test_the_default_memory_limit_is_an_option_with_a_way_to_turn_it_off() -> None:
    assert LocalOptions.parse({}, {}).default_memory_limit == "1Gi"
    assert LocalOptions.parse({"default_memory": "2Gi"}, {}).default_memory_limit == "2Gi"
    assert LocalOptions.parse({}, {"SOS_DEFAULT_MEMORY": "512Mi"}).default_memory_limit == "512Mi"
    assert LocalOptions.parse({"default-memory": " None "}, {}).default_memory_limit is None
    for wrong in ("1GB", "0", "-1Gi", "512Ki", "off", "lots"):
        with pytest.raises(ValidationError) as caught:
            LocalOptions.parse({"default_memory": wrong}, {})
        assert str(caught.value) == (
            f"--backend-opt default_memory / SOS_DEFAULT_MEMORY={wrong}: {wrong!r} is not a "
            "memory limit: write one like 1Gi or 512Mi (at least 1Mi), or none for no limit on "
            "revisions that set none"
        )


def test_the_fake_backend_takes_its_domain(tmp_path: Path) -> None:
    backend = create_backend("fake", BackendContext(data_dir=tmp_path, options={"domain": "x"}))
    assert isinstance(backend, FakeBackend) and backend.domain == "x"


def test_register_backend_in_process(tmp_path: Path, registered: None) -> None:
    class Colour(BackendOptions):
        label = "colour"
        colour: str = "red"

    register_backend("bare", lambda context: FakeBackend(domain=context.options["d"]))
    register_backend(
        "typed",
        BackendPlugin(
            "typed",
            lambda context: FakeBackend(domain=Colour.parse(context.options).colour),
            options=Colour,
        ),
    )
    register_backend("named", "sos.runtime.fake:PLUGIN")
    assert {"bare", "typed", "named"} <= set(backend_names())
    bare = create_backend("bare", BackendContext(data_dir=tmp_path, options={"d": "b"}))
    assert isinstance(bare, FakeBackend) and bare.domain == "b"
    typed = create_backend("typed", BackendContext(data_dir=tmp_path))
    assert isinstance(typed, FakeBackend) and typed.domain == "red"
    with pytest.raises(ValidationError, match="unknown colour backend option"):
        create_backend("typed", BackendContext(data_dir=tmp_path, options={"size": "1"}))
    assert isinstance(create_backend("named", BackendContext(data_dir=tmp_path)), FakeBackend)


def test_a_backend_whose_factory_cannot_be_imported_says_so(
    tmp_path: Path, registered: None
) -> None:
    register_backend("gone", BackendPlugin("gone", "no_such_module:create"))
    with pytest.raises(ValidationError, match=r"backend 'gone' cannot be loaded from no_such"):
        create_backend("gone", BackendContext(data_dir=tmp_path))


def test_a_backend_from_a_separately_installed_package(acme: Path, tmp_path: Path) -> None:
    code = """
        from pathlib import Path
        from sos.runtime.registry import BackendContext, backend_names, create_backend, get_backend
        import sos.runtime.registry as registry
        print(" ".join(backend_names()))
        print(get_backend("local").factory)  # a plug-in cannot take a built-in's name
        made = create_backend("acme", BackendContext(Path("."), options={"size": "3"}))
        print(made.domain)
        try:
            create_backend("acme", BackendContext(Path("."), options={"weight": "3"}))
        except Exception as exc:
            print(exc)
    """
    proc = run(acme, "-c", textwrap.dedent(code), env={"ACME_COLOUR": "blue"})
    assert proc.returncode == 0, proc.stderr
    names, local, domain, error = proc.stdout.splitlines()
    assert names.split() == sorted(["acme", "fake", "knative", "local"])
    assert local == "sos.runtime.local.backend:create_backend"
    assert domain == "blue.3.acme"
    assert (
        error == "unknown acme backend option(s) weight: use colour, size (--backend-opt KEY=VALUE)"
    )


def test_sos_server_offers_a_plugin_backends_flags(acme: Path) -> None:
    sos = ("-c", "from sos.cli import main; main()", "server")
    shown = run(acme, *sos, "--help", env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "--acme-colour" in shown.stdout and "--router-port" in shown.stdout
    refused = run(acme, *sos, "--backend", "fake", "--acme-colour", "blue", "--port", "0")
    assert refused.returncode == 2
    assert "--acme-colour: only with --backend acme" in refused.stderr


def test_a_flag_of_another_backend_or_of_none_is_a_usage_error(tmp_path: Path) -> None:
    base = ["server", "--port", "0", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*base, "--backend", "fake", "--router-port", "0"])
    assert result.exit_code == 2
    assert "--router-port: only with --backend local" in result.stderr
    result = CliRunner().invoke(app, [*base, "--backend", "fake", "--colour", "red"])
    assert result.exit_code == 2 and "no such option: --colour" in result.stderr
    result = CliRunner().invoke(app, [*base, "--backend", "local", "--router-port", "x"])
    assert result.exit_code == 2 and "--router-port must be a whole number" in result.stderr


@pytest.mark.parametrize(
    ("backend", "option", "says"),
    [
        ("fake", "colour=red", "unknown fake backend option(s) colour: use domain"),
        (
            "local",
            "default_memory=1GB",
            "--backend-opt default_memory / SOS_DEFAULT_MEMORY=1GB: '1GB' is not a memory "
            "limit: write one like 1Gi or 512Mi",
        ),
    ],
)
def test_sos_server_refuses_an_unknown_or_wrong_backend_option(
    tmp_path: Path, backend: str, option: str, says: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["server", "--port", "0", "--data-dir", str(tmp_path), "--backend", backend,
         "--backend-opt", option],
    )  # fmt: skip
    assert result.exit_code == 1
    assert says in " ".join(result.stderr.split())


def test_a_server_plugin_from_a_separately_installed_package(acme: Path) -> None:
    code = f"""
        from fastapi.testclient import TestClient
        from sos.config import ServerSettings
        from sos.server import create_app
        from pathlib import Path
        settings = ServerSettings(data_dir=Path({str(acme / "data")!r}), backend="fake")
        app = create_app(settings)
        state = app.state.sos
        print(state.extra["acme"])
        token = (state.settings.data_dir / "admin-token").read_text().strip()
        with TestClient(app) as client:
            print(client.get("/api/v1/acme").status_code)
            auth = {{"Authorization": f"Bearer {{token}}"}}
            print(client.get("/api/v1/acme", headers=auth).json())
    """
    proc = run(acme, "-c", textwrap.dedent(code))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["configured", "401", "{'hello': 'acme'}"]


def test_a_server_plugin_that_cannot_be_imported_stops_the_server(tmp_path: Path) -> None:
    install(tmp_path, "broken_sos", "[sos.server_plugins]\nbroken = broken_missing\n", {})
    code = f"""
        from sos.config import ServerSettings
        from sos.server import create_app
        from pathlib import Path
        create_app(ServerSettings(data_dir=Path({str(tmp_path / "data")!r}), backend="fake"))
    """
    proc = run(tmp_path, "-c", textwrap.dedent(code))
    assert proc.returncode != 0
    assert "server plug-in broken_missing cannot be imported" in proc.stderr


def test_a_backend_without_options_refuses_any(tmp_path: Path, registered: None) -> None:
    register_backend("plain", BackendPlugin("plain", lambda context: FakeBackend()))
    assert isinstance(create_backend("plain", BackendContext(data_dir=tmp_path)), FakeBackend)
    with pytest.raises(ValidationError, match=r"option\(s\) size: it takes none"):
        create_backend("plain", BackendContext(data_dir=tmp_path, options={"size": "1"}))
