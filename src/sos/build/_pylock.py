"""Resolving declared Python dependencies into ``requirements.lock``.

pip resolves, not SOS: ``pip install --dry-run --ignore-installed --report`` run by the
interpreter the artifact is built for, with the indexes pip is configured with, gives the
exact set (every transitive dependency, the file chosen for each and its sha256). The lock
is pip's requirements format, so ``pip install -r requirements.lock`` installs it too::

    # requirements.lock: written by `sos build` from pyproject.toml [project] dependencies
    # ...
    # sos-lock: source=pyproject.toml inputs=sha256:... python=3.11 platform=linux-x86_64
    flask==3.1.3 \\
        --hash=sha256:f4bc...

``inputs`` is the digest of the declarations (``Declared.digest``): a later build reuses
the lock while it matches, and the lock holds for the Python version and platform named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sos.build._pyreqs import LOCK_FILE, LOCK_MARK, Declared, Dependency
from sos.build.base import BuildContext
from sos.build.errors import BuildFailedError

__all__ = ["check_hashes", "lock_problem", "resolve", "write_lock"]

#: the first pip whose ``install`` has ``--dry-run`` and ``--report``
PIP_WITH_REPORT = (22, 2)


def lock_problem(header: dict[str, str], info: dict[str, Any]) -> str | None:
    """Why a lock resolved for ``header``'s target does not fit the interpreter ``info``."""
    if (header.get("python"), header.get("platform")) == (info["version"], info["platform"]):
        return None
    return (
        f"it was resolved for Python {header.get('python')} ({header.get('platform')}) and "
        f"this build is for Python {info['version']} ({info['platform']})"
    )


def resolve(
    declared: Declared,
    root: Path,
    ctx: BuildContext,
    pip: list[str],
    info: dict[str, Any],
    env: dict[str, str],
) -> list[dict[str, Any]]:
    """pip's report of what installing ``declared`` for ``info``'s interpreter takes."""
    version = tuple(int(p) for p in info["pip"].split(".")[:2] if p.isdigit())
    if version < PIP_WITH_REPORT:
        raise BuildFailedError(
            f"resolving {declared.what} needs pip >= 22.2 in the target interpreter (it has "
            f"pip {info['pip']}): upgrade it ({pip[0]} -m pip install -U pip), or pin every "
            f"dependency with '=='"
        )
    report = ctx.workdir / "resolution.json"
    if declared.source.name == "pyproject.toml":
        wanted = list(declared.requirements)
    else:
        wanted = ["-r", str(declared.source)]
    argv = [*pip, "--dry-run", "--ignore-installed", "--report", str(report), *wanted]
    try:
        ctx.run(argv, cwd=root, what=f"resolving {declared.what} with pip", env=env)
    except BuildFailedError as exc:
        raise BuildFailedError(
            f"pip could not resolve {declared.what} for Python {info['version']}: check "
            "the names exist and the version ranges can be met together\n" + exc.message
        ) from None
    data = json.loads(report.read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = data.get("install", [])
    return items


def _line(item: dict[str, Any], root: Path) -> str:
    meta = item["metadata"]
    name, version = meta["name"], meta["version"]
    info = item.get("download_info") or {}
    url: str = info.get("url", "")
    sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256")
    local = url.startswith("file:")
    if "dir_info" in info or (local and item.get("is_direct")):
        path = os.path.relpath(Path(url.removeprefix("file://")), root)
        return path if path.startswith(("..", "/")) else "./" + path
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        return f"{name} @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
    if item.get("is_direct"):
        return f"{name} @ {url}" + (f"#sha256={sha}" if sha and "#" not in url else "")
    return f"{name}=={version}" + (f" \\\n    --hash=sha256:{sha}" if sha else "")


def write_lock(
    declared: Declared, items: list[dict[str, Any]], root: Path, info: dict[str, Any]
) -> Path:
    """Write ``ROOT/requirements.lock`` from pip's report; the sorted pins it holds."""
    lines = sorted(
        (_line(item, root) for item in items),
        key=lambda line: canonicalize_name(line.split("==")[0].split(" @ ")[0]),
    )
    header = [
        f"# Written by `sos build` from {declared.what},",
        f"# resolved by pip {info['pip']} for Python {info['full']} ({info['platform']}).",
        "# Commit it: builds install exactly these versions and reuse this file while the",
        "# declarations are unchanged (they resolve again when they change, and",
        "# `sos build --frozen` refuses to build then). Delete it to take newer versions.",
        f"{LOCK_MARK} source={declared.source.name} inputs={declared.digest} "
        f"python={info['version']} platform={info['platform']}",
    ]
    path = root / LOCK_FILE
    tmp = path.with_name(f".{LOCK_FILE}.tmp")
    tmp.write_text("\n".join([*header, *lines]) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def check_hashes(report: Path, deps: list[Dependency]) -> None:
    """Every installed file that the lock gives hashes for has one of them.

    Hashes are checked after pip installs (from its ``--report``) rather than by pip's
    hash-checking mode, which would demand hashes for the server packages SOS adds too.
    """
    wanted = {d.name: set(d.hashes) for d in deps if d.name and d.hashes}
    if not wanted:
        return
    data = json.loads(report.read_text(encoding="utf-8"))
    for item in data.get("install", []):
        name = canonicalize_name(item["metadata"]["name"])
        if name not in wanted:
            continue
        info = item.get("download_info") or {}
        sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256")
        if f"sha256:{sha}" not in wanted[name]:
            raise BuildFailedError(
                f"{name} {item['metadata']['version']} from {info.get('url', '?')} has "
                f"sha256 {sha or '(unknown)'}, which the lock file does not list: the file "
                "changed since the lock was written, or the index serves another build of "
                "it. Check where it comes from, then resolve again (delete the lock file)"
            )
