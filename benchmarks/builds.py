"""Local and remote builds side by side, in one run.

For two projects:

- ``httpbin``: httpbin from PyPI with an *unpinned* dependency (``dependencies =
  ["httpbin"]``), written to a temporary directory: the first build resolves it;
- ``movielens``: ``examples/movielens`` (Flight, pandas, numpy, implicit; its model and
  data packed with it; ``flight-sos`` from the repository through the local path ``../..``,
  which a remote build uploads with the project), in a scratch copy of the repository.

it measures:

- local build: ``sos.build.build`` with an empty build cache of its own, then a cached
  rebuild of the same source;
- remote build: ``Client.build`` against a ``sos server`` started here (uvicorn on
  127.0.0.1, its builder as ``sos server`` makes it: bubblewrap when run as root): check +
  pack + upload + queue + build in the builder + store, then a cached rebuild of the same
  source; the upload's size; and, once, the builder's set-up (its Python with pip, its copy
  of SOS's build code).

The goal: a remote cached rebuild within 1.5x of a local cached rebuild.

    .venv/bin/python benchmarks/builds.py [--only httpbin|movielens] [--rebuilds 3]

pip's download cache: the local builds use the machine's; the server's builder has its own
(empty at first). Figures are wall-clock times on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import BuildCache, build
from sos.build.source import pack_source
from sos.models import Build

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "support"), str(REPO / "tests" / "docs")]

HTTPBIN_PYPROJECT = """\
[project]
name = "httpbin-unpinned"
version = "1.0.0"
requires-python = ">=3.11"
dependencies = ["httpbin"]

[tool.sos]
app = "httpbin:app"
"""


def scratch_repo(target: Path) -> Path:
    """The repository's files as a fresh clone has them (what the docs' examples run in)."""
    from docs_runner import scratch_copy

    target.mkdir(parents=True)
    return scratch_copy(target)


def movielens(scratch: Path) -> Path:
    project = scratch_repo(scratch / "repo") / "examples" / "movielens"
    env = dict(os.environ)
    origin = subprocess.run(
        ["git", "config", "remote.origin.url"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    for repo in (REPO, Path(origin) if origin.startswith("/") else REPO):
        data = repo.parent / "shared" / "data" / "movielens-small"
        if "MOVIELENS_DIR" not in env and data.is_dir():
            env["MOVIELENS_DIR"] = str(data)  # beside the repository, or beside its origin
    subprocess.run(
        [sys.executable, str(project / "movielens_model.py"), "--if-missing"],
        cwd=project,
        env={**env, "PYTHONPATH": str(project.parents[1] / "src")},
        check=True,
        capture_output=True,
    )
    return project


def httpbin(scratch: Path) -> Path:
    project = scratch / "httpbin-unpinned"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text(HTTPBIN_PYPROJECT)
    return project


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["httpbin", "movielens"])
    parser.add_argument("--rebuilds", type=int, default=3, help="cached rebuilds to time")
    args = parser.parse_args()
    from sos_server import start_server

    scratch = Path(tempfile.mkdtemp(prefix="sos-bench-builds-"))
    os.environ.setdefault("SOS_HOME", str(scratch / "sos-home"))
    server = start_server(scratch / "server")
    from sos.server.builds import BuildService, configure

    configure(server.state)  # what `sos server` does at start
    service = server.state.extra["builds"]
    assert isinstance(service, BuildService)
    setup, _ = timed(service.builder.ensure)
    rows: list[tuple[str, str, str]] = [
        ("builder set-up (once per server)", f"{setup:.2f}s", service.builder.describe())
    ]
    try:
        with server.client() as api:
            projects = {"httpbin": httpbin, "movielens": movielens}
            for name, make in projects.items():
                if args.only and name != args.only:
                    continue
                # the remote build goes on the source as the user has it (httpbin: no lock
                # yet); the local build writes its lock into a copy of its own
                project = make(scratch / name)
                top = project.parents[1] if name == "movielens" else project
                shutil.copytree(top, scratch / f"{name}-local")
                local_project = scratch / f"{name}-local" / project.relative_to(top)
                cache = BuildCache(scratch / f"cache-{name}")
                catalog = LocalArtifactCatalog(scratch / f"catalog-{name}")

                local = functools.partial(build, local_project, cache=cache, catalog=catalog)
                remote = functools.partial(api.build, project)

                local_cold, _ = timed(local)
                local_cached = [timed(local)[0] for _ in range(args.rebuilds)]
                remote_cold, first = timed(remote)
                remote_cached = [timed(remote)[0] for _ in range(args.rebuilds)]
                done = first if isinstance(first, Build) else None
                assert done is not None and done.started_at and done.finished_at
                packed = pack_source(project, local=[top] if top != project else [])
                queue = (done.started_at - done.created_at).total_seconds()
                inside = (done.finished_at - done.started_at).total_seconds()
                lc, rc = statistics.median(local_cached), statistics.median(remote_cached)
                rows += [
                    (f"{name}: local build", f"{local_cold:.2f}s", "empty build cache"),
                    (f"{name}: local cached rebuild", f"{lc:.2f}s", "median"),
                    (
                        f"{name}: remote build",
                        f"{remote_cold:.2f}s",
                        f"queued {queue:.2f}s, build+store {inside:.2f}s",
                    ),
                    (
                        f"{name}: remote cached rebuild",
                        f"{rc:.2f}s",
                        f"median, {rc / lc:.2f}x the local one (goal <= 1.5x)",
                    ),
                    (
                        f"{name}: upload",
                        f"{packed.size / 2**20:.2f} MiB",
                        f"{len(packed.files)} files, {packed.unpacked_size / 2**20:.1f} MiB "
                        "unpacked",
                    ),
                ]
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    for what, figure, note in rows:
        print(f"{what:<{width}}  {figure:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
