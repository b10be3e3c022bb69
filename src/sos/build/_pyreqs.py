"""Python dependency declarations and what "pinned" means for SOS.

A build must give the same artifact from the same source, so every dependency it installs
must be pinned. Pinned means one of:

- an exact version: ``flask==3.0.3`` (or ``===``), no wildcards;
- a local path (``./libs/shared``, ``../..``, ``file:///...``): its content is part of the
  build's cache key;
- a URL with a hash (``https://...whl#sha256=...``) or a VCS URL at a full commit
  (``git+https://...@<40 hex digits>``).

Dependencies come from a lock file when the project has one (``requirements.lock``, else
``requirements.txt``: pip's format, every requirement pinned, with hashes if you like),
otherwise from ``[project] dependencies`` in pyproject.toml, each pinned with ``==``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from sos.build.errors import ProjectError

__all__ = ["LOCK_FILES", "Dependency", "parse_lock_file", "pin_problem", "read_dependencies"]

LOCK_FILES = ("requirements.lock", "requirements.txt")
_COMMIT = re.compile(r"@[0-9a-f]{40}(#|$)")
_PASS_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--no-index")
_HOW_TO_PIN = (
    "pin it to one version with '==' (for example 'flask==3.0.3'), or keep ranges in "
    "pyproject.toml and add a lock file with every dependency pinned: "
    "`pip-compile -o requirements.lock pyproject.toml`, "
    "`uv pip compile pyproject.toml -o requirements.lock`, "
    "or `pip freeze > requirements.lock` in a clean virtualenv"
)


@dataclass(frozen=True)
class Dependency:
    """One line of the dependency set, as pip will read it."""

    line: str
    #: canonical project name; None for a local path whose name pip will find out
    name: str | None
    #: an absolute local directory or file this dependency is built from
    local_path: Path | None = None


def _looks_like_path(text: str) -> bool:
    if text.startswith((".", "/", "~", "file:")):
        return True
    return text.endswith((".whl", ".tar.gz")) and "@" not in text and "://" not in text


def _local(text: str, base: Path) -> Path:
    raw = text.removeprefix("file://").removeprefix("file:")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def pin_problem(requirement: Requirement) -> str | None:
    """Why ``requirement`` is not pinned, or None when it is."""
    if requirement.url:
        url = requirement.url
        if url.startswith("file:"):
            return None
        if "#sha256=" in url or _COMMIT.search(url):
            return None
        return "a URL without a sha256 hash or a full commit id may change under the same name"
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return None
    if not specs:
        return "has no version at all"
    return f"allows more than one version ({requirement.specifier})"


def _dependency(text: str, base: Path, source: Path, field: str) -> Dependency:
    if _looks_like_path(text):
        path = _local(text, base)
        if not path.exists():
            raise ProjectError(
                f"local dependency {text!r} points at {path}, which does not exist; fix the path",
                file=source,
                field=field,
            )
        return Dependency(line=str(path), name=None, local_path=path)
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise ProjectError(
            f"{text!r} is not a valid requirement ({exc}); write it like 'flask==3.0.3'",
            file=source,
            field=field,
        ) from None
    problem = pin_problem(requirement)
    if problem:
        raise ProjectError(
            f"dependency {text!r} is not pinned: it {problem}. SOS builds install exactly "
            f"what is pinned so that a rebuild gives the same artifact: {_HOW_TO_PIN}",
            file=source,
            field=field,
            details={"requirement": text},
        )
    local = None
    if requirement.url and requirement.url.startswith("file:"):
        local = _local(requirement.url, base)
        text = f"{requirement.name} @ {local.as_uri()}"
    return Dependency(line=text, name=canonicalize_name(requirement.name), local_path=local)


def parse_lock_file(path: Path) -> tuple[list[Dependency], list[str]]:
    """The pinned dependencies of a pip requirements file, and the index options it sets."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    deps: list[Dependency] = []
    options: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        field = f"line {number}"
        if line.startswith(("-r", "--requirement", "-c", "--constraint")):
            raise ProjectError(
                f"{line!r}: nested requirement or constraint files are not supported; "
                "put every pinned dependency in this one file",
                file=path,
                field=field,
            )
        if line.startswith(_PASS_OPTIONS):
            options.append(line)
            continue
        if line.startswith(("-e", "--editable")):
            line = line.split(None, 1)[1] if " " in line else ""
        requirement = line.split(" --hash")[0].split(" --")[0].strip()
        hashes = line[len(requirement) :].strip()
        dep = _dependency(requirement, path.parent, path, field)
        if hashes and dep.local_path is None:
            dep = Dependency(line=f"{dep.line} {hashes}", name=dep.name)
        deps.append(dep)
    return deps, options


def read_dependencies(
    root: Path, project: dict[str, object], pyproject: Path | None
) -> tuple[list[Dependency], list[str], Path | None]:
    """The project's pinned dependency set: (dependencies, pip options, lock file used).

    Raises ``ProjectError`` when dependencies are undeclared or not pinned.
    """
    lock = next((root / n for n in LOCK_FILES if (root / n).is_file()), None)
    declared = project.get("dependencies")
    dynamic = project.get("dynamic")
    dynamic = dynamic if isinstance(dynamic, list) else []
    if lock is not None:
        deps, options = parse_lock_file(lock)
        if isinstance(declared, list) and pyproject is not None:
            locked = {d.name for d in deps if d.name}
            has_local = any(d.local_path for d in deps)
            for text in declared:
                try:
                    name = canonicalize_name(Requirement(str(text)).name)
                except InvalidRequirement:
                    continue
                if name not in locked and not has_local:
                    raise ProjectError(
                        f"pyproject.toml depends on {text!r} but {lock.name} pins no "
                        f"{name!r}: regenerate the lock file so that it holds every "
                        "dependency",
                        file=lock,
                    )
        return deps, options, lock
    if pyproject is None or "dependencies" in dynamic or declared is None:
        where = pyproject or root
        raise ProjectError(
            "no dependency declarations: list what the app imports, pinned, as "
            '[project] dependencies = ["flask==3.0.3"] in pyproject.toml (or '
            "dependencies = [] if it needs only the standard library), or add a "
            f"{' or '.join(LOCK_FILES)} lock file with every dependency pinned",
            file=where,
            field="project.dependencies" if pyproject else None,
        )
    if not isinstance(declared, list) or not all(isinstance(d, str) for d in declared):
        raise ProjectError(
            "must be a list of requirement strings", file=pyproject, field="project.dependencies"
        )
    deps = [_dependency(str(text), root, pyproject, "project.dependencies") for text in declared]
    return deps, [], None
