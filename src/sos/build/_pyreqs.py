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

Declared dependencies that are not all pinned (``flask>=3``, ``pandas``, or such lines in
``requirements.txt``) are ``Declared``: the build resolves them into ``requirements.lock``
(``sos.build._pylock``), whose header holds a digest of what was declared, so that the next
build reuses the lock while the declarations are unchanged and resolves again otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from sos.build.errors import ProjectError

__all__ = [
    "LOCK_FILE",
    "LOCK_FILES",
    "Declared",
    "Dependency",
    "DependencySet",
    "parse_lock_file",
    "pin_problem",
    "read_dependencies",
    "read_lock_header",
]

#: the lock file ``sos build`` writes from unpinned declarations
LOCK_FILE = "requirements.lock"
LOCK_FILES = (LOCK_FILE, "requirements.txt")
#: the line of a lock written by ``sos build`` that says what it was resolved from
LOCK_MARK = "# sos-lock:"
_COMMIT = re.compile(r"@[0-9a-f]{40}(#|$)")
_PASS_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--no-index")
_HOW_TO_PIN = (
    "pin it to one version with '==' (for example 'flask==3.0.3') in this lock file, or "
    f"delete the file: `sos build` then resolves the version ranges declared in "
    f"pyproject.toml or requirements.txt into {LOCK_FILE} itself"
)


@dataclass(frozen=True)
class Dependency:
    """One line of the dependency set, as pip will read it."""

    line: str
    #: canonical project name; None for a local path whose name pip will find out
    name: str | None
    #: an absolute local directory or file this dependency is built from
    local_path: Path | None = None
    #: ``sha256:<hex>`` digests the installed file must have (from a lock file)
    hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declared:
    """Dependencies as the project declares them, not all pinned: a lock is resolved from
    them (``sos.build._pylock``)."""

    #: pyproject.toml or requirements.txt
    source: Path
    #: the requirement lines, as declared
    requirements: tuple[str, ...]
    #: the ones that allow more than one version
    unpinned: tuple[str, ...]

    @property
    def digest(self) -> str:
        """What a lock resolved from these declarations records (order does not matter)."""
        text = json.dumps(sorted(self.requirements))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    @property
    def what(self) -> str:
        """Where the declarations are, for messages."""
        if self.source.name == "pyproject.toml":
            return "pyproject.toml [project] dependencies"
        return f"the requirements in {self.source.name}"


@dataclass(frozen=True)
class DependencySet:
    """What ``read_dependencies`` found."""

    #: the pinned set to install (empty while a lock is still to be resolved)
    dependencies: list[Dependency]
    #: index options of the lock file
    options: list[str] = field(default_factory=list)
    #: the lock file the set comes from
    lock: Path | None = None
    #: declarations a lock is (or must be) resolved from; None for pinned projects and
    #: hand-written lock files
    declared: Declared | None = None
    #: the header fields of a lock ``sos build`` wrote
    header: dict[str, str] = field(default_factory=dict)
    #: why ``declared`` needs resolving: "missing", or why the lock is stale; None when
    #: the lock matches (or none is needed)
    needs_lock: str | None = None


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


def _unpinned(text: str) -> bool:
    """True for a valid requirement that allows more than one version."""
    if _looks_like_path(text):
        return False
    try:
        return pin_problem(Requirement(text)) is not None
    except InvalidRequirement:
        return False


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


def _lines(path: Path) -> list[tuple[int, str]]:
    """The logical lines of a pip requirements file, without comments: (number, line)."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            found.append((number, line))
    return found


def parse_lock_file(path: Path) -> tuple[list[Dependency], list[str]]:
    """The pinned dependencies of a pip requirements file, and the index options it sets."""
    deps: list[Dependency] = []
    options: list[str] = []
    for number, line in _lines(path):
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
        hashes = tuple(
            h.replace("=", ":", 1) if not h.startswith("sha256:") else h
            for h in re.findall(r"--hash[=\s]+(\S+)", line[len(requirement) :])
        )
        dep = _dependency(requirement, path.parent, path, field)
        if hashes and dep.local_path is None:
            dep = Dependency(line=dep.line, name=dep.name, hashes=hashes)
        deps.append(dep)
    return deps, options


def read_lock_header(path: Path) -> dict[str, str]:
    """The ``# sos-lock: key=value ...`` fields of a lock ``sos build`` wrote ({} for a
    lock file written by hand or another tool)."""
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(LOCK_MARK):
                    words = line[len(LOCK_MARK) :].split()
                    return dict(w.split("=", 1) for w in words if "=" in w)
                if not line.startswith("#"):
                    break
    except (OSError, UnicodeDecodeError):
        return {}
    return {}


def _declared(
    root: Path, project: dict[str, object], pyproject: Path | None, source: str | None
) -> Declared | None:
    """The project's declarations when they allow more than one version (None when every
    one is pinned). ``source`` names the file a lock was resolved from, if one was."""
    requirements_txt = root / "requirements.txt"
    if source in (None, "requirements.txt") and requirements_txt.is_file():
        lines = [
            line
            for _, line in _lines(requirements_txt)
            if not line.startswith(("-r", "--requirement", "-c", "--constraint"))
        ]
        unpinned = tuple(line for line in lines if _unpinned(line.split(" --")[0]))
        if unpinned or source:
            return Declared(requirements_txt, tuple(lines), unpinned)
        return None
    declared = project.get("dependencies")
    if pyproject is None or not isinstance(declared, list):
        return None
    texts = tuple(str(t) for t in declared)
    unpinned = tuple(t for t in texts if _unpinned(t))
    if unpinned or source:
        return Declared(pyproject, texts, unpinned)
    return None


def read_dependencies(
    root: Path, project: dict[str, object], pyproject: Path | None
) -> DependencySet:
    """The project's pinned dependency set.

    Raises ``ProjectError`` when dependencies are undeclared, not pinned in a lock file
    written by hand, or a hand-written lock misses a declared one. Declarations that are
    not all pinned come back as ``declared``, with ``needs_lock`` saying whether the lock
    ``sos build`` wrote from them is missing or stale.
    """
    generated = root / LOCK_FILE
    header = read_lock_header(generated) if generated.is_file() else {}
    if header:
        declared = _declared(root, project, pyproject, header.get("source", "pyproject.toml"))
        if declared is None:
            stale: str | None = f"{header.get('source')}, which it was resolved from, is gone"
        elif header.get("inputs") != declared.digest:
            stale = f"{declared.what} changed since it was resolved"
        else:
            stale = None
        deps, options = parse_lock_file(generated) if stale is None else ([], [])
        return DependencySet(deps, options, generated, declared, header, stale)
    if not (root / LOCK_FILE).is_file():
        declared = _declared(root, project, pyproject, None)
        if declared is not None:
            return DependencySet([], declared=declared, needs_lock="missing")
    lock = next((root / n for n in LOCK_FILES if (root / n).is_file()), None)
    declared_list = project.get("dependencies")
    dynamic = project.get("dynamic")
    dynamic = dynamic if isinstance(dynamic, list) else []
    if lock is not None:
        deps, options = parse_lock_file(lock)
        if isinstance(declared_list, list) and pyproject is not None:
            locked = {d.name for d in deps if d.name}
            has_local = any(d.local_path for d in deps)
            for text in declared_list:
                try:
                    name = canonicalize_name(Requirement(str(text)).name)
                except InvalidRequirement:
                    continue
                if name not in locked and not has_local:
                    raise ProjectError(
                        f"pyproject.toml depends on {text!r} but {lock.name} pins no "
                        f"{name!r}: regenerate the lock file so that it holds every "
                        f"dependency (or delete it: sos build then writes {LOCK_FILE})",
                        file=lock,
                    )
        return DependencySet(deps, options, lock)
    if pyproject is None or "dependencies" in dynamic or declared_list is None:
        where = pyproject or root
        raise ProjectError(
            "no dependency declarations: list what the app imports as [project] "
            'dependencies = ["flask"] in pyproject.toml (or dependencies = [] if it needs '
            "only the standard library), or add a requirements.txt",
            file=where,
            field="project.dependencies" if pyproject else None,
        )
    if not isinstance(declared_list, list) or not all(isinstance(d, str) for d in declared_list):
        raise ProjectError(
            "must be a list of requirement strings", file=pyproject, field="project.dependencies"
        )
    deps = [
        _dependency(str(text), root, pyproject, "project.dependencies") for text in declared_list
    ]
    return DependencySet(deps)
