"""A plug-in package as ``pip install`` would leave it, for tests of entry points: its
modules and a dist-info with ``entry_points.txt`` in a folder that goes on ``sys.path`` of a
fresh interpreter (entry points are read from the installed metadata, once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

__all__ = ["install", "run"]


def install(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """Put distribution ``name`` (version 1.0) with ``modules`` (name -> source) in ``site``."""
    for module, body in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(body))
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def run(
    site: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGV`` with ``site`` first on its path."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        timeout=120,
        check=False,
    )
