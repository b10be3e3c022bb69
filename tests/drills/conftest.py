"""Drills: the platform under load, faults and bad input, with real processes on 127.0.0.1.

Fixtures build the MovieLens example and the small Flask example once per session with
`sos build` (its cache makes later builds quick), and ``platform`` runs one `sos server`
with the MovieLens recommender deployed as revision 1 (pipeline v1) and 2 (v2) through
`sos deploy examples/movielens/deploy.py`, as the main job does. Drills that kill or starve
the server start their own. Every drill reports what it tried and what held; the report is
printed at the end of the run (and written to test-artifacts/drills.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from drills_harness import REPORT, SOS, SosServer
from drills_platform import MOVIELENS, REPO, SERVICE, SFIX, Built, Platform, cli, movielens_data

from sos.build.api import read_metadata


@pytest.fixture(scope="session")
def sos_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The drills' own catalog of local builds (SOS_HOME), so pushes never clash with yours."""
    return tmp_path_factory.mktemp("sos-home")


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory, sos_home: Path) -> Callable[[Path], Built]:
    """``build(project)``: `sos build PROJECT --json`, once per project and session."""
    done: dict[Path, Built] = {}

    def run(project: Path) -> Built:
        if project not in done:
            out = tmp_path_factory.mktemp("dist")
            proc = subprocess.run(
                [SOS, "build", str(project), "--json", "--out", str(out)],
                env={**os.environ, "SOS_HOME": str(sos_home)},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr[-4000:]
            path = Path(json.loads(proc.stdout)["path"])
            done[project] = (path, read_metadata(path))
        return done[project]

    return run


@pytest.fixture(scope="session")
def movielens(build: Callable[[Path], Built]) -> Built:
    if not (movielens_data() / "ratings.csv").is_file():
        pytest.skip(f"MovieLens data not found in {movielens_data()} (set MOVIELENS_DIR)")
    train_model_if_missing()
    return build(MOVIELENS)


def train_model_if_missing() -> None:
    """Pipeline v3's model, which `sos build` packs (``models/``), as the main job does."""
    subprocess.run(
        [sys.executable, str(MOVIELENS / "movielens_model.py"), "--if-missing"],
        env={**os.environ, "MOVIELENS_DIR": str(movielens_data())},
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def sfix(build: Callable[[Path], Built]) -> Built:
    return build(SFIX)


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, movielens: Built, sos_home: Path
) -> Iterator[Platform]:
    server = SosServer(tmp_path_factory.mktemp("platform") / "data")
    try:
        path, metadata = movielens
        with server.client() as client:
            client.push_artifact(path, metadata=metadata)
        env = {"MOVIELENS_DIR": str(movielens_data()), "ARTIFACT_VERSION": metadata.version}
        deploy = str(MOVIELENS / "deploy.py")
        for version in ("v1", "v2"):
            done = cli(server, sos_home, "deploy", deploy, MOVIELENS_VERSION=version, **env)
            assert done.returncode == 0, done.stdout + done.stderr
        yield Platform(server, f"{SERVICE}-00001", f"{SERVICE}-00002")
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.section("drills: what was tried and what held")
    for drill, lines in REPORT:
        terminalreporter.write_line(f"{drill}")
        for line in lines:
            terminalreporter.write_line(f"    {line}")
    out = REPO / "test-artifacts" / "drills.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([{"drill": d, "report": lines} for d, lines in REPORT], indent=2))
