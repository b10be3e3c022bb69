"""How an artifact is started: the one contract shared by the builders (which make artifacts
that honour it), the local runtime (which starts them as processes) and the curated runtime
images (whose entrypoint does the same inside a container).

An instance of a revision is started as::

    python3 ARTIFACT.pyz          # language "python": a shiv zipapp that serves its app
    node ARTIFACT.js              # language "node": an ncc bundle
    ./ARTIFACT                    # language "go": a static binary
    java [-Xmx..] -jar ARTIFACT.jar  # language "jvm"

with this environment (plus the revision's own env vars):

    PORT                  the port to listen on (always set)
    HOST                  the address to bind (127.0.0.1 locally, 0.0.0.0 in a container)
    SOS_SERVICE           the service name
    SOS_REVISION          the revision id, e.g. sfix-service-00003
    SOS_WORKER_COUNT      GunicornConfig.worker_count   (Python artifacts honour these four)
    SOS_THREAD_COUNT      GunicornConfig.thread_count
    SOS_WORKER_CLASS      GunicornConfig.worker_class, or "" to let the artifact choose
    SOS_TIMEOUT_SECONDS   GunicornConfig.timeout_seconds
    SOS_MEMORY_BYTES      the memory limit in bytes, when one is set

Knative additionally sets ``K_SERVICE``, ``K_REVISION`` and ``K_CONFIGURATION``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from sos.models import ArtifactMetadata, Revision
from sos.quantity import memory_bytes

__all__ = ["ARTIFACT_SUFFIX", "launch_command", "launch_env"]

#: the file name suffix of each language's artifact
ARTIFACT_SUFFIX: Mapping[str, str] = {"python": ".pyz", "node": ".js", "go": "", "jvm": ".jar"}


def launch_command(
    artifact: ArtifactMetadata,
    path: Path,
    *,
    memory: str | None = None,
    python: str | None = None,
) -> list[str]:
    """The argv that starts ``artifact`` stored at ``path``."""
    if artifact.language == "python":
        return [python or sys.executable, str(path)]
    if artifact.language == "node":
        return [shutil.which("node") or "node", str(path)]
    if artifact.language == "go":
        return [str(path)]
    if artifact.language == "jvm":
        argv = [shutil.which("java") or "java"]
        if memory:
            # leave a quarter of the limit for the JVM's own non-heap memory
            heap_mib = max(16, memory_bytes(memory) * 3 // 4 // 2**20)
            argv.append(f"-Xmx{heap_mib}m")
        return [*argv, "-jar", str(path)]
    raise ValueError(f"unknown artifact language {artifact.language!r}")


def launch_env(
    revision: Revision,
    *,
    port: int,
    host: str = "127.0.0.1",
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of an instance of ``revision`` listening on ``host:port``."""
    env = dict(base or {})
    for var in revision.env_vars:
        env[var.id] = var.value
    gunicorn = revision.gunicorn_config
    env.update(
        {
            "PORT": str(port),
            "HOST": host,
            "SOS_SERVICE": revision.service or "",
            "SOS_REVISION": revision.id or "",
            "SOS_WORKER_COUNT": str(gunicorn.worker_count),
            "SOS_THREAD_COUNT": str(gunicorn.thread_count),
            "SOS_WORKER_CLASS": gunicorn.worker_class or "",
            "SOS_TIMEOUT_SECONDS": str(gunicorn.timeout_seconds),
        }
    )
    if revision.resources.memory:
        env["SOS_MEMORY_BYTES"] = str(memory_bytes(revision.resources.memory))
    return env
