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
    SOS_MEMORY_BYTES      the memory limit in bytes, when there is one (the revision's, or
                          the local runtime's default for revisions that set none)

Knative additionally sets ``K_SERVICE``, ``K_REVISION`` and ``K_CONFIGURATION``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from sos.errors import ValidationError
from sos.models import ArtifactMetadata, GunicornConfig, Revision, RevisionSpec
from sos.quantity import memory_bytes

__all__ = [
    "ARTIFACT_SUFFIX",
    "check_options",
    "container_concurrency",
    "launch_command",
    "launch_env",
    "worker_class",
]

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
    secrets: Mapping[str, str] | None = None,
    memory: str | None = None,
) -> dict[str, str]:
    """The environment of an instance of ``revision`` listening on ``host:port``, with the
    values of the secrets it uses from ``secrets`` (None: leave them out, for a caller that
    references them instead, as Kubernetes does) and ``memory`` as its memory limit (None:
    the revision's own, if any; a runtime gives its default to revisions that set none)."""
    env = dict(base or {})
    for var in revision.env_vars:
        if var.secret is None:
            env[var.id] = var.value
        elif secrets is not None:
            if var.secret not in secrets:
                raise ValidationError(
                    f"secret {var.secret!r} (for {var.id}) does not exist (any more): set it "
                    f"again with `sos secret set {var.secret} --team TEAM`"
                )
            env[var.id] = secrets[var.secret]
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
    limit = memory or revision.resources.memory
    if limit:
        env["SOS_MEMORY_BYTES"] = str(memory_bytes(limit))
    return env


def _interface(artifact: ArtifactMetadata) -> str | None:
    """``wsgi``, ``asgi`` or ``command`` for a Python artifact built by ``sos build``."""
    value = artifact.extra.get("interface")
    return value if isinstance(value, str) else None


def worker_class(revision: RevisionSpec, artifact: ArtifactMetadata) -> str | None:
    """The gunicorn worker class that serves ``revision`` (None: gunicorn does not)."""
    interface = _interface(artifact)
    if artifact.language != "python" or interface == "command":
        return None  # (a Python artifact of unknown interface: gunicorn, as it always was)
    config = revision.gunicorn_config
    if config.worker_class is not None:
        return config.worker_class
    if interface == "asgi":
        return "uvicorn"
    return "gthread" if config.thread_count > 1 else "sync"


def container_concurrency(revision: RevisionSpec, artifact: ArtifactMetadata) -> int:
    """Requests one instance serves at once, as Knative's ``containerConcurrency`` (0: no
    hard limit). Sync and gthread workers serve workers x threads; gevent and uvicorn
    workers are asynchronous (thousands of requests each), and other artifacts serve what
    they can: none of those gets a hard limit, the autoscaler's target still applies."""
    if worker_class(revision, artifact) in ("sync", "gthread"):
        return revision.gunicorn_config.concurrency
    return 0


def check_options(revision: RevisionSpec, artifact: ArtifactMetadata) -> None:
    """Refuse options that cannot apply to ``artifact`` (422, saying why and what to use),
    rather than accept them and crash-loop, or show them as if they were applied."""
    config = revision.gunicorn_config
    interface = _interface(artifact)
    what = f"artifact {artifact.name} {artifact.version}"
    served_by_gunicorn = artifact.language == "python" and interface != "command"
    if not served_by_gunicorn:
        if config != GunicornConfig():
            kind = (
                f"a {artifact.language} artifact"
                if artifact.language != "python"
                else ("a Python artifact that runs its own command")
            )
            raise ValidationError(
                f"gunicorn_config does not apply to {what}: it is {kind}, not a WSGI or ASGI "
                "app served by gunicorn; drop gunicorn_config (the artifact itself decides "
                "how many requests it serves at once)",
                details={"field": "gunicorn_config", "language": artifact.language},
            )
        return
    chosen = config.worker_class
    effective = worker_class(revision, artifact)
    if interface == "asgi" and chosen not in (None, "uvicorn"):
        raise ValidationError(
            f"gunicorn_config.worker_class {chosen!r} cannot serve {what}: it is an ASGI app, "
            "which only uvicorn workers serve; drop worker_class or use 'uvicorn'",
            details={"field": "gunicorn_config.worker_class", "interface": interface},
        )
    if interface == "wsgi" and chosen == "uvicorn":
        raise ValidationError(
            f"gunicorn_config.worker_class 'uvicorn' cannot serve {what}: it is a WSGI app; "
            "drop worker_class, or use 'sync', 'gthread' or 'gevent'",
            details={"field": "gunicorn_config.worker_class", "interface": interface},
        )
    if effective in ("uvicorn", "gevent") and config.thread_count > 1:
        raise ValidationError(
            f"gunicorn_config.thread_count {config.thread_count} does not apply to "
            f"{effective} workers (each serves many requests on one thread); drop "
            "thread_count or raise worker_count",
            details={"field": "gunicorn_config.thread_count", "worker_class": effective},
        )
