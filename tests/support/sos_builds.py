"""Remote builds in tests: a builder for the whole session (its Python, its copy of SOS's
build code and its caches, as a server keeps them), and a test server whose build service
uses it, with a server environment the builder must never see."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from sos_server import RunningServer

from sos.models import Build
from sos.server.build_sandbox import BuilderEnvironment
from sos.server.builds import BuildService, _publisher, _stored

#: a variable of the server's environment that no build may see
SENTINEL = "SOS_TEST_SERVER_ONLY"
#: the example projects of the build tests
PROJECTS = Path(__file__).parents[1] / "sos" / "build" / "projects"


def make_builder(root: Path) -> BuilderEnvironment:
    builder = BuilderEnvironment(root)
    builder.ensure()
    return builder


def build_server(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, **options: object
) -> RunningServer:
    """A test server (``sos_server``) whose remote builds run on ``builder``."""
    running = sos_server()
    state = running.state
    environ = {SENTINEL: "secret", "PATH": os.environ.get("PATH", "")}
    environ.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    state.extra["builds"] = BuildService(
        state.settings.data_dir / "builds",
        builder=builder,
        publish=_publisher(state),
        stored=_stored(state),
        environ=environ,
        **options,  # type: ignore[arg-type]
    )
    return running


def wsgi_project(tmp_path: Path, name: str, body: str, version: str = "1.0.0") -> Path:
    """A WSGI project with no dependencies whose module runs ``body`` when it is
    imported (the build's app check imports it, in the builder)."""
    root = tmp_path / name
    (root / "svc").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = []\n\n'
        '[tool.sos]\napp = "svc.web:app"\n'
    )
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "web.py").write_text(
        f"{body}\n\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    return root


def unpinned_project(tmp_path: Path, name: str, *dependencies: str) -> Path:
    """A WSGI project as a new user writes it: dependencies without versions (``six``,
    tiny and without dependencies of its own, by default), no lock file."""
    root = wsgi_project(tmp_path, name, "import six")
    declared = ", ".join(f'"{d}"' for d in dependencies or ("six",))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = []", f"dependencies = [{declared}]")
    )
    return root


def slow_project(tmp_path: Path, name: str) -> Path:
    return wsgi_project(tmp_path, name, "import time\ntime.sleep(120)")


def wait_state(client: object, build_id: str, *states: str, within: float = 120) -> Build:
    deadline = time.monotonic() + within
    while True:
        build = client.get_build(build_id)  # type: ignore[attr-defined]
        if build.state in states:
            return build  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"build {build_id} stayed {build.state}"
        time.sleep(0.1)


def flooding_project(tmp_path: Path, name: str, size: int, *, direct: bool = False) -> Path:
    """A WSGI project whose module, imported by the build's app check, prints a line of
    ``size`` bytes; ``direct``: with no newline, straight to its builder's output (its
    parent's stdout), as a build that means harm would."""
    body = (
        "import os\n"
        "with open(f'/proc/{os.getppid()}/fd/1', 'w') as out:\n"
        f"    out.write('x' * {size})\n"
        if direct
        else f"print('x' * {size})\n"
    )
    return wsgi_project(tmp_path, name, body)


def longest_line(text: str) -> int:
    return max(len(line) for line in text.splitlines())
