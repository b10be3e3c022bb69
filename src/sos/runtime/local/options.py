"""The local backend's options and ``sos server`` flags, and its registry entry (``PLUGIN``).

Cheap to import on purpose: ``sos server`` reads every backend's flags from here; the
backend itself (``backend.py``, the router, HAProxy) is imported only when it is chosen.
Each option is a ``--backend-opt KEY=VALUE``, else its environment variable, else the
default (``docs/sos/local-runtime.md`` has the table).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationInfo, field_validator

from sos.quantity import QuantityError, memory_bytes
from sos.runtime.local.limits import DEFAULT_MEMORY
from sos.runtime.local.network import NETWORKS
from sos.runtime.local.sandbox import DEFAULT_PROCESSES, SANDBOXES
from sos.runtime.registry import BackendFlag, BackendOptions, BackendPlugin

__all__ = ["DATA_PATHS", "PLUGIN", "LocalOptions"]

#: the router's data paths: HAProxy programmed at runtime, or the Python router alone
DATA_PATHS = ("haproxy", "python")


def _number(value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ValueError(f"must be a number, not {value!r}") from None
    if number < 0:
        raise ValueError("is out of range")
    return number


#: option -> (its values, what they mean)
_CHOICES = {
    "router": (("auto", *DATA_PATHS), "haproxy or python (or auto: HAProxy when it is installed)"),
    "sandbox": (
        SANDBOXES,
        "bubblewrap (each service in a sandbox of its own) or none (single tenant, no isolation)",
    ),
    "sandbox_network": (
        NETWORKS,
        "private (a network of its own per instance) or host (instances share the host's)",
    ),
}


class LocalOptions(BackendOptions):
    """``sos server --backend local`` options."""

    label: ClassVar[str] = "local"
    env: ClassVar[dict[str, str]] = {
        "router_port": "SOS_ROUTER_PORT",
        "router_host": "SOS_ROUTER_HOST",
        "domain": "SOS_ROUTER_DOMAIN",
        "keep_instances": "SOS_KEEP_INSTANCES",
        "router": "SOS_ROUTER",
        "sandbox": "SOS_SANDBOX",
        "sandbox_network": "SOS_SANDBOX_NETWORK",
        "metrics_token": "SOS_ROUTER_METRICS_TOKEN",
        "default_memory": "SOS_DEFAULT_MEMORY",
    }
    hints: ClassVar[dict[str, str]] = {
        "startup_timeout": "a revision's start-up budget is its "
        "health_check.startup_timeout_seconds"
    }

    router_port: int = 8080
    router_host: str = "127.0.0.1"
    domain: str = "localhost"
    #: least seconds a request waits for a revision to start
    activation_timeout: float = 30.0
    #: seconds an instance may take to answer
    request_timeout: float = 300.0
    #: leave instances running when the server stops (for a restart without downtime)
    keep_instances: bool = False
    #: the router's data path; auto: HAProxy when ``haproxy`` is on PATH
    router: str = "auto"
    #: bubblewrap, or none: a single tenant, no isolation
    sandbox: str = "bubblewrap"
    #: each instance's /tmp and home
    sandbox_tmp: str = "256Mi"
    #: processes per service
    sandbox_processes: int = DEFAULT_PROCESSES
    #: private (a network per instance) or host; None: private with the sandbox, else host
    sandbox_network: str | None = None
    #: the bearer token the router's /metrics asks for; empty: /metrics is off
    metrics_token: str = ""
    #: each instance's memory limit when its revision sets none; none: no limit
    default_memory: str = DEFAULT_MEMORY

    @field_validator("router_port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int:
        number = _number(value)
        if number > 65535 or not number.is_integer():
            raise ValueError("is out of range")
        return int(number)

    @field_validator("activation_timeout", "request_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> float:
        return _number(value)

    @field_validator("keep_instances", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool:
        return str(value).strip().lower() in ("1", "true", "yes", "on")

    @field_validator("router", "sandbox", "sandbox_network", mode="before")
    @classmethod
    def _choice(cls, value: object, info: ValidationInfo) -> str:
        choices, meaning = _CHOICES[str(info.field_name)]
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{text!r} is unknown: use {meaning}")
        return text

    @field_validator("sandbox_tmp")
    @classmethod
    def _tmp(cls, value: str) -> str:
        memory_bytes(value)  # ValueError saying what is wrong
        return value

    @field_validator("default_memory", mode="before")
    @classmethod
    def _default_memory(cls, value: object) -> str:
        text = str(value).strip()
        if text.lower() == "none":
            return "none"
        try:
            amount = memory_bytes(text)
        except QuantityError:
            amount = 0
        if amount < 2**20:
            raise ValueError(
                f"{text!r} is not a memory limit: write one like 1Gi or 512Mi (at least 1Mi), "
                "or none for no limit on revisions that set none"
            )
        return text

    @field_validator("sandbox_processes", mode="before")
    @classmethod
    def _processes(cls, value: object) -> int:
        number = _number(value)
        if number < 16 or not number.is_integer():
            raise ValueError("must be a whole number of 16 or more")
        return int(number)

    @property
    def sandbox_tmp_bytes(self) -> int:
        return memory_bytes(self.sandbox_tmp)

    @property
    def default_memory_limit(self) -> str | None:
        """The default memory limit, None when there is none."""
        return None if self.default_memory == "none" else self.default_memory

    @property
    def network(self) -> str:
        """The instances' network, its default depending on the sandbox."""
        default = "private" if self.sandbox == "bubblewrap" else "host"
        return self.sandbox_network or default


PLUGIN = BackendPlugin(
    name="local",
    factory="sos.runtime.local.backend:create_backend",
    options=LocalOptions,
    flags=(
        BackendFlag(
            "--router-port",
            "router_port",
            "Port of the shared router that serves the services; 0 picks a free one "
            "[env SOS_ROUTER_PORT; 8080].",
            int,
        ),
        BackendFlag(
            "--router",
            "router",
            "The router's data path: haproxy or python [env SOS_ROUTER; haproxy when it is "
            "installed].",
        ),
    ),
    description="revisions as processes on this machine behind one shared router",
)
