"""How long the main job takes from a fresh clone: `scripts/main --exit` twice.

The first run creates `.venv`, installs the Python packages, builds the MovieLens
recommender and deploys two revisions; the second reuses all of it. Run from the repository:

    .venv/bin/python benchmarks/platform_main_job.py [--warm-caches]

It clones this repository (its committed state) into a temporary folder and, unless
--warm-caches, gives the runs empty pip and SOS build caches, as a new machine has (the apt
packages are taken as installed). Prints each run's wall time and the main job's own step
times; the ratio second/first shows what a second run saves.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(clone: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(clone / "scripts" / "main"), "--exit"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"scripts/main failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return took, done.stdout


def steps(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if re.match(r"^✓ .*\(\d", line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-caches", action="store_true", help="keep this user's caches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="main-job-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SOS_DATA_DIR")}
        env.update(SOS_PORT="0", SOS_ROUTER_PORT="0")
        env.setdefault(
            "MOVIELENS_DIR", str((REPO.parent / "shared" / "data" / "movielens-small").resolve())
        )
        if not args.warm_caches:
            env.update(PIP_CACHE_DIR=f"{tmp}/pip-cache", SOS_CACHE_DIR=f"{tmp}/sos-cache")
        first, out1 = run(clone, env)
        second, out2 = run(clone, env)
    caches = "warm" if args.warm_caches else "empty"
    print(f"fresh clone, {caches} pip and build caches, {os.cpu_count()} CPUs")
    print(f"first run  {first:6.1f} s   (.venv, pip install, cold build, two revisions)")
    for line in steps(out1):
        print(f"    {line}")
    print(f"second run {second:6.1f} s   (nothing pushed or deployed twice)")
    for line in steps(out2):
        print(f"    {line}")
    print(f"second/first: {second / first:.2f}")


if __name__ == "__main__":
    main()
