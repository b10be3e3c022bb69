"""`flight serve` as a user runs it: a real subprocess, on the port from --port or $PORT,
JSON-lines logs on stderr, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flight.serving.server import TargetError, load_target, resolve_address

FLIGHT = str(Path(sys.executable).parent / "flight")
APP = textwrap.dedent(
    """
    import flight
    import flight.operators as fo

    class Hello(fo.SourceOperator):
        async def __call__(self, user_id: int) -> fo.Source:
            return fo.Source([user_id, user_id + 1])

    PIPE = flight.Pipeline("hello", item_type="item").initialize(includes=[Hello()])
    app = flight.App("cli-test")

    @app.endpoint("/hello")
    async def hello(user_id: int) -> flight.Result:
        return await PIPE.execute(user_id=user_id)
    """
)
CONFIG = "name: listed\nitem_type: item\nincludes:\n  - Dedupe: {column: item}\n"


class Served:
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.port: int | None = None
        self._found = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                self._found.set()
        self._found.set()

    def url(self) -> str:
        self._found.wait(60)
        assert self.port, "the server did not start:\n" + "".join(self.lines[-20:])
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hello_app.py").write_text(APP)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "listed.yaml").write_text(CONFIG)
    (tmp_path / "sub").mkdir()  # an app importing its sibling module, as examples/movielens
    (tmp_path / "sub" / "sub_ops.py").write_text("import flight\n")
    (tmp_path / "sub" / "sub_app.py").write_text("import sub_ops\napp = sub_ops.flight.App('s')\n")
    (tmp_path / "broken_app.py").write_text("import flight\nraise RuntimeError('no data')\n")
    return tmp_path


@pytest.fixture
def run(project: Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
            full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
            super().__init__(argv, project, full)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for s in started:
        s.stop()


def test_serve_module_app_on_port_from_environment(run: type[Served]) -> None:
    served = run([FLIGHT, "serve", "hello_app:app", "--debug"], env={"PORT": "0"})  # type: ignore[call-arg]
    r = httpx.get(served.url() + "/hello", params={"user_id": 41, "debug": "true"})
    assert r.status_code == 200 and r.json()["item"] == [41, 42]
    assert r.json()["debug"][0]["name"] == "Hello"
    # uvicorn shuts down gracefully, then exits by the signal it got (as a process should)
    assert served.stop() in (0, -signal.SIGTERM)
    time.sleep(0.2)  # the reader thread drains stderr
    records = [json.loads(line) for line in served.lines if line.startswith("{")]
    assert any(r.get("message") == "Application shutdown complete." for r in records)
    assert any(r.get("operator") == "Hello" and r.get("trace_id") for r in records)
    assert any("flight: serving 'cli-test'" in line for line in served.lines)


def test_serve_configs_directory_with_port_option(run: type[Served], project: Path) -> None:
    served = run([FLIGHT, "serve", "--configs", "pipelines", "--port", "0", "--debug"])  # type: ignore[call-arg]
    url = served.url()
    listing = httpx.get(url + "/pipelines").json()["pipelines"]
    assert [p["name"] for p in listing] == ["listed"]
    assert httpx.get(url + "/explorer/").status_code == 200


def test_serve_file_path_target(run: type[Served]) -> None:
    served = run([FLIGHT, "serve", "./hello_app.py:app", "--port", "0"])  # type: ignore[call-arg]
    assert httpx.get(served.url() + "/hello", params={"user_id": 1}).json()["item"] == [1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve"], "give the app to serve"),
        (["serve", "hello_app:app", "--configs", "pipelines"], "not both"),
        (["serve", "nowhere:app"], "cannot import 'nowhere'"),
        (["serve", "hello_app:missing"], "has no attribute 'missing'"),
        (["serve", "hello_app"], "is not MODULE:ATTRIBUTE"),
        (["serve", "--configs", "no_such_dir"], "does not exist"),
        (
            ["serve", "sub.sub_app:app"],
            "sub.sub_app: importing it failed: No module named 'sub_ops' (the module's folder "
            "is not on the path: use the file path sub/sub_app.py:app, or run from its folder)",
        ),
        (["serve", "broken_app:app"], "broken_app: importing it failed: RuntimeError: no data"),
        (
            ["serve", "hello_app.py:Hello"],
            "Hello in hello_app.py is not a flight.App or an ASGI application (it is a class); "
            "serve hello_app.py:app",
        ),
        (
            ["serve", "pipelines"],
            "is a folder, not an app: serve the pipeline configs in it "
            "with `flight serve --configs pipelines`",
        ),
    ],
)
def test_usage_errors_say_what_to_do(project: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [FLIGHT, *args], cwd=project, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_import_traceback_only_at_debug_log_level(project: Path) -> None:
    argv = [FLIGHT, "serve", "broken_app:app", "--log-level", "debug"]
    proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "RuntimeError: no data" in proc.stderr


def test_port_in_use_is_one_clear_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [FLIGHT, "serve", "hello_app:app", "--port", str(port)]
        proc = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use; stop what listens "
        f"there, or pick another port with --port or $PORT\n"
    )


def test_address_comes_from_arguments_then_environment() -> None:
    assert resolve_address(None, None, env={}) == ("127.0.0.1", 8080)
    assert resolve_address(None, None, env={"PORT": "9000", "HOST": "0.0.0.0"}) == ("0.0.0.0", 9000)
    assert resolve_address("::1", 7000, env={"PORT": "9000"}) == ("::1", 7000)
    with pytest.raises(TargetError, match="PORT='http' is not a port number"):
        resolve_address(None, None, env={"PORT": "http"})


def test_load_target_finds_apps_by_module_or_file(project: Path) -> None:
    app = load_target("hello_app.py:app", project)
    assert app.name == "cli-test"
    with pytest.raises(TargetError, match="no such file"):
        load_target("missing.py:app", project)


def test_serve_with_workers_spreads_requests_over_processes(
    run: type[Served], project: Path
) -> None:
    """`--workers 2`: two processes share the port (a CPU-heavy pipeline can use two cores),
    each serving the same app."""
    (project / "pid_app.py").write_text(
        "import os\nimport flight\napp = flight.App('pids')\n\n"
        "@app.endpoint('/pid')\nasync def pid() -> dict:\n    return {'pid': os.getpid()}\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = run([FLIGHT, "serve", "pid_app:app", "--workers", "2", "--port", str(port)])  # type: ignore[call-arg]
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=5) as http:  # a new connection each time
                pids.add(http.get(url + "/pid").json()["pid"])
        except httpx.HTTPError:
            time.sleep(0.1)
    assert len(pids) == 2, "".join(served.lines[-20:])
    assert served.proc.pid not in pids  # the parent only supervises
    assert any("2 worker processes" in line for line in served.lines)
