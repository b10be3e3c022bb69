"""Remote builds in tests: a builder for the whole session (its Python, its copy of SOS's
build code and its caches, as a server keeps them), and a test server whose build service
uses it, with a server environment the builder must never see."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sos_server import RunningServer

from sos.server.build_sandbox import BuilderEnvironment
from sos.server.builds import BuildService, _publisher, _stored

#: a variable of the server's environment that no build may see
SENTINEL = "SOS_TEST_SERVER_ONLY"


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
