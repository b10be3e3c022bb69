"""Memory and CPU limits for instances, with what this machine allows.

- cgroup v2 (``/sys/fs/cgroup/cgroup.controllers`` present and writable): each instance
  gets its own cgroup under ``/sys/fs/cgroup/sos/`` with ``memory.max`` (the limit: the
  kernel's OOM killer ends the instance above it) and ``cpu.max`` (a CPU quota).
- otherwise memory is capped with ``RLIMIT_DATA`` (private writable memory: heap and
  anonymous mappings), set by starting the instance under ``prlimit``. ``RLIMIT_AS`` is not
  used: Go and the JVM reserve far more address space than they use and fail to start
  under it. JVM instances get ``-Xmx`` from ``sos.launch`` instead of an rlimit. A CPU limit
  cannot be enforced without cgroups; it is then only logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sos.quantity import cpu_millicores, memory_bytes

__all__ = ["Limiter", "Limits"]

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    cpu_millicores: int | None = None

    @classmethod
    def of(cls, memory: str | None, cpu: str | None) -> Limits:
        return cls(
            memory_bytes(memory) if memory else None,
            cpu_millicores(cpu) if cpu else None,
        )


class Limiter:
    """Applies ``Limits`` with cgroup v2 when it can, rlimits otherwise."""

    def __init__(self, cgroup_root: Path = CGROUP_ROOT) -> None:
        self.root = cgroup_root / "sos"
        self.cgroups = _cgroup_v2_writable(cgroup_root)
        self.prlimit = shutil.which("prlimit")

    def describe(self) -> str:
        """Which limits are in force, for the server's start-up line and status."""
        if self.cgroups:
            return "memory and CPU limits by cgroup v2"
        return (
            "memory limits by RLIMIT_DATA (JVM: -Xmx); CPU limits NOT enforced "
            "(no writable cgroup v2 here)"
        )

    def not_applied(self, limits: Limits) -> str | None:
        """What of ``limits`` this machine cannot enforce, said for the instance's log."""
        if limits.cpu_millicores is None or self.cgroups:
            return None
        return (
            f"its CPU limit ({limits.cpu_millicores}m) is not enforced: this machine has no "
            "writable cgroup v2 (memory is limited by RLIMIT_DATA)"
        )

    def wrap(self, argv: list[str], limits: Limits, language: str) -> list[str]:
        """The argv to start, with an rlimit wrapper when cgroups are not available."""
        if self.cgroups or limits.memory_bytes is None or language == "jvm" or not self.prlimit:
            return argv
        return [self.prlimit, f"--data={limits.memory_bytes}", "--", *argv]

    def attach(self, instance: str, pid: int, limits: Limits) -> None:
        """Put a started process into its own cgroup (when cgroups are used)."""
        if not self.cgroups or (limits.memory_bytes is None and limits.cpu_millicores is None):
            return
        group = self.root / instance
        try:
            if not self.root.exists():
                self.root.mkdir()
                (self.root / "cgroup.subtree_control").write_text("+memory +cpu")
            group.mkdir(exist_ok=True)
            if limits.memory_bytes is not None:
                (group / "memory.max").write_text(str(limits.memory_bytes))
            if limits.cpu_millicores is not None:
                period = 100_000
                (group / "cpu.max").write_text(f"{limits.cpu_millicores * period // 1000} {period}")
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            log.warning("could not apply cgroup limits to %s: %s", instance, exc)

    def release(self, instance: str) -> None:
        if self.cgroups:
            with contextlib.suppress(OSError):
                (self.root / instance).rmdir()


def _cgroup_v2_writable(root: Path) -> bool:
    if not (root / "cgroup.controllers").exists():
        return False
    try:
        controllers = (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    return "memory" in controllers and os.access(root, os.W_OK)
