"""Build and start-up times of SOS artifacts, in one run.

For two real projects:

- ``httpbin``: httpbin from PyPI (Flask), wrapped in the smallest project SOS builds
  (``tests/sos/build/projects/httpbin-service``);
- ``flight-service``: a FastAPI service that runs a Flight pipeline, depending on this
  repository's ``flight-sos`` distribution (pandas, numpy, pydantic, ...) through a local
  path pin in ``requirements.lock``; it is written to a temporary directory.

it measures, with an empty SOS build cache of its own (pip's download cache is whatever the
machine has):

- cold build: everything resolved and packed;
- cached rebuild: the same source again (the goal is <= 3 s);
- rebuild after a code change (dependencies cached, code and zipapp rebuilt);
- time to the first HTTP 200 of ``python ARTIFACT.pyz``, on a first start (shiv unpacks into
  an empty ``SHIV_ROOT``) and on later starts (``SHIV_ROOT`` kept, or filled beforehand by
  ``SOS_PREPARE_ONLY=1 python ARTIFACT.pyz``, as runtimes do once per artifact and machine),
  against the same app under the same gunicorn settings from an installed virtualenv
  (the goal is within 1.5x).

    .venv/bin/python benchmarks/build_artifacts.py [--starts 5] [--only httpbin]

Figures are wall-clock times on whatever else the machine is doing: compare the ratios,
measured side by side in this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sos.artifacts.catalog import LocalArtifactCatalog
from sos.build import BuildCache, build

REPO = Path(__file__).resolve().parents[1]
HTTPBIN = REPO / "tests" / "sos" / "build" / "projects" / "httpbin-service"

FLIGHT_APP = '''\
"""A recommendation endpoint: a Flight pipeline behind FastAPI."""

from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI

import flight.operators as fo
from flight import Pipeline

ITEMS = pd.DataFrame({"item": np.arange(1000), "score": np.linspace(0, 1, 1000)})


class Popular(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(ITEMS)


PIPELINE = Pipeline("popular", item_type="item").initialize(includes=[Popular()]) | fo.Sort(
    "score", desc=True
)
app = FastAPI()


@app.get("/")
async def recommend() -> dict[str, Any]:
    result = await PIPELINE.execute(return_cols=["item", "score"])
    return {"items": result.items["item"].head(10).tolist(), "version": "VERSION"}
'''


def snapshot_repo(target: Path) -> Path:
    """This repository at HEAD (others' uncommitted edits would make builds differ)."""
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def flight_project(root: Path, version: str) -> Path:
    source = snapshot_repo(root.parent / "flight-sos-src")
    (root / "recsvc").mkdir(parents=True, exist_ok=True)
    (root / "recsvc" / "__init__.py").write_text("")
    (root / "recsvc" / "api.py").write_text(FLIGHT_APP.replace("VERSION", version))
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "flight-service"\nversion = "{version}"\n'
        'dependencies = ["flight-sos"]\n\n[tool.sos]\napp = "recsvc.api:app"\n'
    )
    (root / "requirements.lock").write_text(f"# this repository, pinned by path\n{source}\n")
    return root


@dataclass
class Case:
    name: str
    make: Callable[[Path, str], Path]
    path: str
    figures: dict[str, float] = field(default_factory=dict)


def copy_httpbin(root: Path, version: str) -> Path:
    if not root.exists():
        shutil.copytree(HTTPBIN, root, ignore=shutil.ignore_patterns("dist", ".sos"))
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    old = text.split('version = "', 1)[1].split('"', 1)[0]
    pyproject.write_text(text.replace(f'version = "{old}"', f'version = "{version}"'))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_200(
    argv: list[str], env: dict[str, str], path: str, *, bind: bool = False, timeout: float = 120
) -> float:
    """Seconds from spawning ``argv`` to its first HTTP 200 on ``path``. The port goes in
    ``PORT`` (artifacts) or, with ``bind``, as gunicorn's ``--bind`` (the venv baseline)."""
    port = free_port()
    full_env = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    if bind:
        argv = [*argv, "--bind", f"127.0.0.1:{port}"]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode} before answering")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.005)
        raise RuntimeError(f"{argv} did not answer within {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def venv_for(work: Path, packages: list[str]) -> Path:
    """A virtualenv with exactly the packages the artifact holds (the baseline)."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    requirements = work / "baseline-requirements.txt"
    local = [p for p in packages if p.lower().startswith("flight-sos==")]
    pins = [p for p in packages if p not in local]
    requirements.write_text("\n".join(pins) + "\n")
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "-r", str(requirements)], check=True, stderr=subprocess.DEVNULL)
    if local:
        subprocess.run(
            [*pip, "--no-deps", str(snapshot_repo(work.parent / "flight-sos-src"))], check=True
        )
    return venv


def run_case(case: Case, work: Path, starts: int) -> None:
    cache = BuildCache(work / "cache")
    catalog = LocalArtifactCatalog(work / "catalog")
    root = work / case.name
    case.make(root, "1.0.0")
    print(f"\n== {case.name}", flush=True)
    seconds, result = timed(lambda: build(root, cache=cache, catalog=catalog))
    case.figures["cold build"] = seconds
    seconds, again = timed(lambda: build(root, cache=cache, catalog=catalog))
    assert again.cached and again.metadata.digest == result.metadata.digest  # type: ignore[attr-defined]
    case.figures["cached rebuild"] = seconds
    case.make(root, "1.0.1")
    for source in root.rglob("*.py"):  # httpbin has no code of its own: the version changed
        source.write_text(source.read_text() + "\n# changed\n")
    seconds, _ = timed(lambda: build(root, cache=cache, catalog=catalog))
    case.figures["code-change rebuild"] = seconds
    artifact = result.path  # type: ignore[attr-defined]
    meta = result.metadata  # type: ignore[attr-defined]
    case.figures["artifact MiB"] = meta.size / 2**20
    size = meta.size / 2**20
    print(f"   built {artifact.name}: {size:.1f} MiB, interface {meta.extra['interface']}")

    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work / "home"), "LANG": "C.UTF-8"}
    cold, warm = [], []
    for i in range(starts):
        env = {**base_env, "SHIV_ROOT": str(work / f"shiv-cold-{i}")}
        cold.append(first_200([sys.executable, str(artifact)], env, case.path))
    prepare = []
    for i in range(starts):
        env = {**base_env, "SHIV_ROOT": str(work / f"shiv-prepared-{i}"), "SOS_PREPARE_ONLY": "1"}
        seconds, _ = timed(
            lambda env=env: subprocess.run([sys.executable, str(artifact)], env=env, check=True)
        )
        prepare.append(seconds)
    warm_env = {**base_env, "SHIV_ROOT": str(work / "shiv-prepared-0")}
    for _ in range(starts):
        warm.append(first_200([sys.executable, str(artifact)], warm_env, case.path))

    venv = venv_for(work / f"{case.name}-baseline", meta.extra["packages"])
    worker = "uvicorn_worker.UvicornWorker" if meta.extra["interface"] == "asgi" else "sync"
    gunicorn = [
        str(venv / "bin" / "python"), "-m", "gunicorn", meta.entry_point,
        "--workers", "1", "--worker-class", worker, "--no-control-socket", "--chdir", str(root),
    ]  # fmt: skip
    baseline = [first_200(gunicorn, base_env, case.path, bind=True) for _ in range(starts)]
    case.figures["first 200, artifact first start"] = statistics.median(cold)
    case.figures["prepare (unpack once per machine)"] = statistics.median(prepare)
    case.figures["first 200, artifact later starts"] = statistics.median(warm)
    case.figures["first 200, installed venv"] = statistics.median(baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="starts per measurement")
    parser.add_argument("--only", choices=["httpbin", "flight-service"], default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    cases = [
        Case("httpbin", copy_httpbin, "/get"),
        Case("flight-service", flight_project, "/"),
    ]
    work = Path(tempfile.mkdtemp(prefix="sos-build-bench-"))
    try:
        for case in cases:
            if args.only in (None, case.name):
                run_case(case, work, args.starts)
    finally:
        if args.keep:
            print(f"\nwork directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'':36}" + "".join(f"{c.name:>16}" for c in cases if c.figures))
    keys = list(next(c for c in cases if c.figures).figures)
    for key in keys:
        unit = "" if key.endswith("MiB") else " s"
        cells = "".join(f"{c.figures[key]:>14.2f}{unit:2}" for c in cases if c.figures)
        print(f"{key:36}{cells}")
    for label, key in (
        ("first start", "first 200, artifact first start"),
        ("later starts", "first 200, artifact later starts"),
    ):
        ratios = "".join(
            f"{c.figures[key] / c.figures['first 200, installed venv']:>15.2f}x"
            for c in cases
            if c.figures
        )
        print(f"{'artifact/venv, ' + label:36}{ratios}")
    print("\ngoals: cached rebuild <= 3 s; artifact first 200 within 1.5x of the venv start")


if __name__ == "__main__":
    main()
