"""Memory and CPU limits for instances, with what this machine allows.

- cgroup v2 (``/sys/fs/cgroup/cgroup.controllers`` present and writable): each instance
  gets its own cgroup under ``/sys/fs/cgroup/sos/`` with ``memory.max`` (the limit: the
  kernel's OOM killer ends the instance above it) and ``cpu.max`` (a CPU quota).
- otherwise memory is capped with ``RLIMIT_DATA`` (private writable memory: heap and
  anonymous mappings), set by starting the instance under ``prlimit``. ``RLIMIT_AS`` is not
  used: Go and the JVM reserve far more address space than they use and fail to start
  under it. JVM instances get ``-Xmx`` from ``sos.launch`` instead of an rlimit. A CPU limit
  cannot be enforced without cgroups; it is then only logged.

A revision that sets no memory limit gets the server's default (``default_memory``,
``DEFAULT_MEMORY`` unless the server says otherwise; ``none`` turns it off): one team's
instance cannot take all of the machine's memory by leaving the limit out. Its spec keeps
``None``; ``Limiter.applied`` is what its instances run with, and what its status reports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sos.models import AppliedLimits, Resources
from sos.quantity import cpu_millicores, memory_bytes

__all__ = ["DEFAULT_MEMORY", "Limiter", "Limits"]

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")

#: the memory limit of an instance whose revision sets none: 2.6x what the largest of the
#: repo's apps (the MovieLens example, pandas) has in one process at its peak
#: (``benchmarks/instance_memory.py``; docs/sos/local-runtime.md, Limits)
DEFAULT_MEMORY = "1Gi"


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

    def __init__(
        self, cgroup_root: Path = CGROUP_ROOT, default_memory: str | None = DEFAULT_MEMORY
    ) -> None:
        self.root = cgroup_root / "sos"
        self.cgroups = _cgroup_v2_writable(cgroup_root)
        self.prlimit = shutil.which("prlimit")
        #: the memory limit of instances whose revision sets none (None: no limit)
        self.default_memory = default_memory

    def describe(self) -> str:
        """Which limits are in force, for the server's start-up line and status."""
        if self.default_memory is None:
            default = (
                "NO memory limit for revisions that set none (default_memory=none): one "
                "instance can take all of this machine's memory"
            )
        else:
            default = f"{self.default_memory} for revisions that set none (default_memory)"
        if self.cgroups:
            return f"memory and CPU limits by cgroup v2; memory: {default}"
        return (
            f"memory limits by RLIMIT_DATA (JVM: -Xmx); memory: {default}; CPU limits NOT "
            "enforced (no writable cgroup v2 here)"
        )

    def applied(self, resources: Resources) -> AppliedLimits:
        """The limits instances of a revision with ``resources`` run with here."""
        if resources.memory:
            return AppliedLimits(memory=resources.memory, memory_source="revision")
        return AppliedLimits(memory=self.default_memory, memory_source="server-default")

    def limits(self, resources: Resources) -> Limits:
        """What ``wrap`` and ``attach`` enforce for a revision with ``resources``."""
        return Limits.of(self.applied(resources).memory, resources.cpu)

    def memory_said(self, resources: Resources) -> str:
        """The memory limit of a revision with ``resources``, and whose it is, for people."""
        limit = self.applied(resources)
        if limit.memory_source == "revision":
            return f"{limit.memory}, its resources.memory"
        if limit.memory is None:
            return "none (it sets no resources.memory, and this server has no default)"
        return f"{limit.memory}, the server's default for revisions without resources.memory"

    def oom_killed(self, instance: str) -> bool:
        """Did the kernel kill a process of the instance at its cgroup's memory limit?"""
        if not self.cgroups:
            return False
        try:
            events = (self.root / instance / "memory.events").read_text().split("\n")
        except OSError:
            return False
        counts = dict(line.split() for line in events if len(line.split()) == 2)
        return counts.get("oom_kill", "0") != "0"

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
