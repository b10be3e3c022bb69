"""Where SOS finds things: environment variables, the ``sos login`` config file, defaults.

Client side (``sos.Client``, the CLI), first match wins:

1. arguments (``Client(url, token)``, ``--url``/``--token`` are not offered on purpose: a
   token on a command line ends up in shell history);
2. ``SOS_URL`` and ``SOS_TOKEN``;
3. the config file written by ``sos login URL --token T`` (``SOS_CONFIG``, default
   ``$XDG_CONFIG_HOME/sos/config.json`` = ``~/.config/sos/config.json``, mode 0600);
4. ``http://127.0.0.1:8700`` (the port from ``SOS_PORT`` when set, as ``sos server`` reads
   it) and, for that local default only, the admin token that a local ``sos server`` wrote
   under its data dir (``SOS_DATA_DIR``), so ``sos server`` + ``sos services`` just works for
   the person who started the server, with the same environment.

Server side (``sos server``): ``SOS_HOST``, ``SOS_PORT`` (8700), ``SOS_DATA_DIR``
(``$XDG_DATA_HOME/sos`` = ``~/.local/share/sos``), ``SOS_DATABASE_URL`` (default SQLite file
``sos.db`` in the data dir), ``SOS_BACKEND``, ``SOS_ADMIN_TOKEN``, ``SOS_RESYNC_SECONDS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sos.errors import ValidationError

__all__ = [
    "ADMIN_TOKEN_FILE",
    "DEFAULT_PORT",
    "DEFAULT_URL",
    "ClientConfig",
    "ServerSettings",
    "config_path",
    "default_data_dir",
    "load_client_config",
    "save_client_config",
]

DEFAULT_PORT = 8700
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
ADMIN_TOKEN_FILE = "admin-token"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def default_data_dir(
    environ: Mapping[str, str] | None = None, *, variable: str = "SOS_DATA_DIR"
) -> Path:
    """Where SOS keeps state on this machine: ``$variable``, else ``$XDG_DATA_HOME/sos``, else
    ``~/.local/share/sos``. The server's data dir moves with ``SOS_DATA_DIR``; the catalog of
    local builds (``sos.artifacts.catalog``) with ``SOS_HOME``: both documented, and a server
    and ``sos build`` on one machine share the default."""
    env = _env(environ)
    if env.get(variable):
        return Path(env[variable]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "sos"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = _env(environ)
    if env.get("SOS_CONFIG"):
        return Path(env["SOS_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "sos" / "config.json"


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None
    #: where the values came from, for error messages ("SOS_TOKEN", "config file ...")
    source: str = "defaults"


def _read_config_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"cannot read the SOS config file {path}: {exc}; fix it or run `sos login` again"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"the SOS config file {path} must hold a JSON object")
    return {k: str(v) for k, v in data.items() if isinstance(v, str | int)}


def load_client_config(
    url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    """Resolve the server URL and token the way the docstring of this module says."""
    env = _env(environ)
    sources: list[str] = []
    if url is None and env.get("SOS_URL"):
        url = env["SOS_URL"]
        sources.append("SOS_URL")
    if token is None and env.get("SOS_TOKEN"):
        token = env["SOS_TOKEN"]
        sources.append("SOS_TOKEN")
    if url is None or token is None:
        path = config_path(env)
        stored = _read_config_file(path)
        if url is None and stored.get("url"):
            url = stored["url"]
            sources.append(str(path))
        if token is None and stored.get("token") and url == stored.get("url"):
            token = stored["token"]
            sources.append(str(path))
    if url is not None and "://" not in url:  # 127.0.0.1:8700, as people type it (and curl)
        url = f"http://{url}"
    # the local server as `sos server` would start here: SOS_PORT and SOS_DATA_DIR count
    port = int(env["SOS_PORT"]) if env.get("SOS_PORT", "").isdigit() else DEFAULT_PORT
    port = port or DEFAULT_PORT  # 0: a free port, which only the server knows
    local = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
    if url is None:
        url = local[0]
        if port != DEFAULT_PORT:
            sources.append("SOS_PORT")
    if token is None and url.rstrip("/") in local:
        token_file = default_data_dir(env) / ADMIN_TOKEN_FILE
        try:
            token = token_file.read_text().strip() or None
            sources.append(str(token_file))
        except OSError:
            pass
    return ClientConfig(url=url.rstrip("/"), token=token, source=", ".join(sources) or "defaults")


def save_client_config(url: str, token: str, environ: Mapping[str, str] | None = None) -> Path:
    """Write the ``sos login`` config file, readable only by its owner."""
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url.rstrip("/"), "token": token}, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"{name}={raw!r} must be a whole number") from None


@dataclass
class ServerSettings:
    """How ``sos server`` runs. ``from_env`` reads the SOS_* variables; CLI flags override."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    backend: str | None = None
    admin_token: str | None = None
    #: the key that seals secrets (32 bytes, base64); default: ``secret-key`` in the data dir
    secret_key: str | None = None
    #: how often every service is reconciled even when nothing changed
    resync_seconds: float = 30.0
    #: options for the chosen backend (``--backend-opt key=value``)
    backend_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        env = _env(environ)
        return cls(
            host=env.get("SOS_HOST") or "127.0.0.1",
            port=_int(env, "SOS_PORT", DEFAULT_PORT),
            data_dir=default_data_dir(env),
            database_url=env.get("SOS_DATABASE_URL") or None,
            backend=env.get("SOS_BACKEND") or None,
            admin_token=env.get("SOS_ADMIN_TOKEN") or None,
            secret_key=env.get("SOS_SECRET_KEY") or None,
            resync_seconds=float(_int(env, "SOS_RESYNC_SECONDS", 30)),
        )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sos.db'}"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / ADMIN_TOKEN_FILE
