"""The SOS resources: one schema shared by the client, the CLI, the web UI and the server.

Each resource is a pydantic model. The fields a user writes form its *spec*; the fields the
server fills in (ids, times, resource versions, ``status``) are read-only: they are ignored
when sent back and always present in what the server returns. ``Revision`` and ``Service``
therefore have a spec-only twin (``RevisionSpec``, ``ServiceSpec``) that the API accepts as
input, so the OpenAPI schema says exactly what may be sent.

Status follows the Kubernetes habit: ``ready`` and ``reason`` for people, plus
``conditions`` (type, status "True"/"False"/"Unknown", reason, message, time) for machines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from sos.quantity import QuantityError, parse_quantity

__all__ = [
    "ROLES",
    "AppliedLimits",
    "Artifact",
    "ArtifactMetadata",
    "Autoscaling",
    "Build",
    "BuildLock",
    "BuildState",
    "BuildStep",
    "Condition",
    "DeployRequest",
    "DeployResult",
    "DesiredService",
    "DesiredState",
    "EnvVar",
    "GunicornConfig",
    "HealthCheck",
    "HistoryEntry",
    "Instances",
    "Language",
    "LogRecord",
    "MetricsPoint",
    "Resources",
    "Revision",
    "RevisionSeries",
    "RevisionSpec",
    "RevisionStatus",
    "Role",
    "Rollout",
    "RolloutCheck",
    "RolloutState",
    "RolloutStatus",
    "Route",
    "Service",
    "ServiceMetrics",
    "ServiceSpec",
    "ServiceStatus",
    "Shadow",
    "ShadowComparison",
    "ShadowReport",
    "Token",
    "TokenCreated",
    "TokenSpec",
    "TrafficRoute",
    "TrafficTarget",
    "normalize_revision_ref",
    "revision_id",
    "revision_parts",
    "summary_line",
]

# --------------------------------------------------------------------------- names

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: a service name leaves room for "-00001" so that revision names stay DNS labels (<= 63)
SERVICE_NAME_MAX = 57
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ARTIFACT_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV = frozenset({"PORT"})
RESERVED_ENV_PREFIXES = ("SOS_", "K_")
REVISION_ID = re.compile(r"^(?P<service>[a-z]([-a-z0-9]*[a-z0-9])?)-(?P<number>\d{5})$")


def _dns_label(what: str, max_len: int = 63) -> Any:
    def check(value: str) -> str:
        if len(value) > max_len:
            raise ValueError(f"{what} {value!r} is {len(value)} characters long; at most {max_len}")
        if not DNS_1035.fullmatch(value):
            raise ValueError(
                f"{what} {value!r} must be a DNS-1035 label: lowercase letters, digits and '-', "
                "starting with a letter and ending with a letter or digit (like 'sfix-service')"
            )
        return value

    return AfterValidator(check)


ServiceName = Annotated[str, _dns_label("service name", SERVICE_NAME_MAX)]
TeamName = Annotated[str, _dns_label("team name")]
TagName = Annotated[str, _dns_label("tag")]


def revision_id(service: str, number: int) -> str:
    """The id of the ``number``-th revision of ``service`` (``sfix-service-00003``)."""
    return f"{service}-{number:05d}"


def revision_parts(rev_id: str) -> tuple[str, str]:
    """``sfix-service-00003`` -> (``sfix-service``, ``00003``): its service, and its number
    as people write it. The one place a revision id is taken apart."""
    service, _, number = rev_id.rpartition("-")
    return service, number


def normalize_revision_ref(service: str, ref: str | int) -> str:
    """Turn a readable reference (``3``, ``"00003"``, ``"sfix-service-00003"``) into an id.

    Raises ``ValueError`` with a message for users when the reference cannot name a
    revision of ``service``.
    """
    text = str(ref).strip()
    if text.isdigit():
        number = int(text)
        if 1 <= number <= 99999:
            return revision_id(service, number)
    match = REVISION_ID.fullmatch(text)
    if match and match["service"] == service:
        return text
    if match:
        raise ValueError(
            f"revision {text!r} belongs to service {match['service']!r}, not {service!r}"
        )
    raise ValueError(
        f"{text!r} is not a revision of {service!r}: use its number (3 or 00003) "
        f"or its id ({revision_id(service, 3)})"
    )


#: ``model_validate(data, context={TRUSTED_SOURCE: True})`` skips checks that only guard
#: input (the store uses it for what it wrote itself)
TRUSTED_SOURCE = "sos_trusted_source"

#: the largest resource version or id a client may send (fits every SQL integer column)
MAX_VERSION = 2**31 - 1


class _Model(BaseModel):
    """Strict about unknown fields, so a typo is an error rather than silently ignored.

    Text may not contain NUL characters (no process environment, hostname or PostgreSQL text
    column can hold one) and numbers must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _no_nul(self, info: ValidationInfo) -> Any:
        if info.context and info.context.get(TRUSTED_SOURCE):
            return self  # read back from the store, where it was checked on the way in
        for key, value in self.__dict__.items():
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{key} contains a NUL character; remove it")
        return self


# --------------------------------------------------------------------------- status


class Condition(_Model):
    """One aspect of observed state, in the Kubernetes style (``type=Ready status=True``)."""

    type: str
    status: Literal["True", "False", "Unknown"] = "Unknown"
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None


class Instances(_Model):
    """How many instances of a revision are wanted, running and ready."""

    wanted: int = 0
    running: int = 0
    ready: int = 0


class AppliedLimits(_Model):
    """The limits a revision's instances run with where the backend says: its own
    ``resources``, or the server's default where it sets none. The revision's spec keeps what
    its author wrote (no limit stays ``None`` there); this is what is applied."""

    memory: str | None = Field(
        default=None, description="Each instance's memory limit, e.g. 1Gi; None: no limit"
    )
    memory_source: Literal["revision", "server-default"] = Field(
        default="revision",
        description="revision: its own resources.memory; server-default: it sets none, and "
        "this is the server's default (the local runtime's default_memory)",
    )


def summary_line(text: str | None) -> str:
    """The first line of a status message, without the log lines quoted after it.

    ``"the instance exited with code 1 before ready, 5 starts in a row; last log lines:\n..."``
    -> ``"the instance exited with code 1 before ready, 5 starts in a row"``: what to show
    where logs do not belong (a service's callers, a one-line error).
    """
    first = (text or "").strip().split("\n", 1)[0]
    for quoted in ("; last log lines", "; its last error"):
        first = first.split(quoted, 1)[0]
    return first.rstrip(" :;,")


class RevisionStatus(_Model):
    ready: bool = False
    reason: str | None = Field(
        default="Pending", description="Why it is (not) ready, e.g. Ready, Deploying, Failed"
    )
    failed: bool = Field(
        default=False,
        description="True when the revision will not become ready by waiting (crash loop, "
        "bad artifact): fix it and create a new revision",
    )
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    instances: Instances = Field(default_factory=Instances)
    limits: AppliedLimits | None = Field(
        default=None,
        description="The limits its instances run with (None: the backend does not say, e.g. "
        "Knative, where the cluster's defaults apply)",
    )
    url: str | None = Field(default=None, description="Where this revision answers directly")
    observed_at: datetime | None = Field(
        default=None, description="When this status was last written (it is written on change)"
    )
    observed_generation: int | None = Field(
        default=None,
        description="The service's resource_version this status was computed for (Kubernetes' "
        "observedGeneration): the status reflects a change once this reaches the "
        "resource_version the change returned",
    )


class TrafficTarget(_Model):
    """Observed traffic: one route with the URL that reaches it."""

    revision: str
    percent: int
    tag: str | None = None
    url: str | None = None


class ServiceStatus(_Model):
    ready: bool = False
    reason: str | None = "Pending"
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    url: str | None = None
    traffic: list[TrafficTarget] = Field(default_factory=list)
    latest_ready_revision: str | None = None
    observed_at: datetime | None = Field(
        default=None, description="When this status was last written (it is written on change)"
    )
    observed_generation: int | None = Field(
        default=None,
        description="The service's resource_version this status was computed for (Kubernetes' "
        "observedGeneration): the status reflects a change once this reaches the "
        "resource_version the change returned",
    )


# --------------------------------------------------------------------------- revision parts


class Artifact(_Model):
    """A built artifact by name and version; the server resolves it to a digest on use."""

    name: str = Field(description="Artifact name, e.g. sfix_service")
    version: str = Field(description="Artifact version, e.g. v0.0.16")
    digest: str | None = Field(
        default=None,
        description="sha256:<hex>; filled in by the server when the revision is created",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ARTIFACT_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"artifact name {value!r} may hold letters, digits, '.', '_' and '-' "
                "(no '/', no '..'), starting with a letter or digit, at most 100 characters"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not ARTIFACT_VERSION.fullmatch(value) or ".." in value:
            raise ValueError(
                f"artifact version {value!r} may hold letters, digits, '.', '_', '+' and '-' "
                "(no '/', no '..'), at most 64 characters, like v0.0.16 or 1.2.3"
            )
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not DIGEST.fullmatch(value):
            raise ValueError(f"digest {value!r} must look like sha256:<64 lowercase hex digits>")
        return value


class EnvVar(_Model):
    id: str = Field(description="Variable name, e.g. LOG_LEVEL", max_length=256)
    value: str = Field(
        default="",
        max_length=32768,
        description="At most 32 KiB: configuration, not data (put files in the artifact)",
    )
    secret: str | None = Field(
        default=None,
        max_length=63,
        description="Take the value from this secret of the service's team (`sos secret set`): "
        "write-only, encrypted at rest, seen only by the instances; value stays empty",
    )
    redacted: bool = Field(
        default=False,
        description="Read-only: the value is hidden from the token that read it (only the "
        "owning team and admins see values); such a variable cannot be sent back",
    )

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not DNS_1035.fullmatch(value):
            raise ValueError(
                f"secret name {value!r} must be lowercase letters, digits and '-', starting "
                "with a letter (e.g. db-password)"
            )
        return value

    @model_validator(mode="after")
    def _value_or_secret(self) -> EnvVar:
        if self.secret is not None and self.value:
            raise ValueError(
                f"environment variable {self.id!r} has both a value and a secret: set value or "
                "secret, not both"
            )
        return self

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            raise ValueError(
                f"environment variable name {value!r} must be letters, digits and '_', "
                "not starting with a digit"
            )
        if value in RESERVED_ENV or value.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError(
                f"environment variable {value!r} is set by the platform; "
                "names PORT, SOS_* and K_* are reserved"
            )
        return value


def _quantity(what: str, minimum: Decimal) -> Any:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            amount = parse_quantity(value)
        except QuantityError as exc:
            raise ValueError(f"{what}: {exc}") from None
        if amount < minimum:
            raise ValueError(f"{what} {value!r} is too small")
        return str(value)

    return AfterValidator(check)


class Resources(_Model):
    """Memory and CPU, as Kubernetes quantities (``2G``, ``512Mi``; ``1000m``, ``0.5``)."""

    memory: Annotated[str | None, _quantity("memory", Decimal(2**20))] = Field(
        default=None, description="Memory limit, e.g. 512Mi or 2G (at least 1Mi)"
    )
    cpu: Annotated[str | None, _quantity("cpu", Decimal("0.001"))] = Field(
        default=None, description="CPU limit, e.g. 1000m or 0.5 (at least 1m)"
    )

    @field_validator("memory", "cpu", mode="before")
    @classmethod
    def _numbers_to_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


def _probe_path(value: str | None) -> str | None:
    if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
        raise ValueError(f"probe path {value!r} must start with '/' and contain no spaces")
    return value


ProbePath = Annotated[str | None, AfterValidator(_probe_path)]


class HealthCheck(_Model):
    """HTTP paths the platform probes; ``None`` turns a probe off."""

    liveness_probe: ProbePath = "/"
    readiness_probe: ProbePath = "/"
    initial_delay_seconds: float = Field(default=0, ge=0, le=3600)
    period_seconds: float = Field(default=1, gt=0, le=3600)
    timeout_seconds: float = Field(default=1, gt=0, le=3600)
    failure_threshold: int = Field(default=3, ge=1, le=100)
    startup_timeout_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="How long a new instance has to pass its readiness probe (after "
        "initial_delay_seconds), like a Kubernetes startup probe: past it the revision is "
        "Failed; it also bounds how long a request waits for an instance starting from zero",
    )


class GunicornConfig(_Model):
    """How a Python artifact is served: processes times threads is its concurrency."""

    worker_count: int = Field(default=1, ge=1, le=64)
    thread_count: int = Field(default=1, ge=1, le=256)
    worker_class: Literal["sync", "gthread", "gevent", "uvicorn"] | None = Field(
        default=None,
        description="None picks one for the app: uvicorn for ASGI, gthread or sync for WSGI",
    )
    timeout_seconds: int = Field(default=30, ge=1, le=3600)

    @property
    def concurrency(self) -> int:
        return self.worker_count * self.thread_count


class Autoscaling(_Model):
    """Concurrency-based autoscaling, modelled on Knative's KPA."""

    min_scale: int = Field(default=0, ge=0, le=1000, description="0 lets it scale to zero")
    max_scale: int = Field(default=5, ge=1, le=1000)
    initial_scale: int = Field(default=1, ge=0, le=1000)
    target_concurrency: float = Field(
        default=10, gt=0, le=10000, description="In-flight requests per instance to aim for"
    )
    target_utilization_percentage: float = Field(default=70, gt=0, le=100)
    stable_window_seconds: float = Field(default=60, ge=6, le=3600)
    panic_window_percentage: float = Field(default=10, ge=1, le=100)
    panic_threshold_percentage: float = Field(default=200, ge=110, le=1000)
    max_scale_up_rate: float = Field(default=1000, gt=1)
    max_scale_down_rate: float = Field(default=2, gt=1)
    scale_down_delay_seconds: float = Field(default=0, ge=0, le=3600)
    scale_to_zero_grace_seconds: float = Field(default=30, ge=0, le=3600)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_scale > self.max_scale:
            raise ValueError(
                f"min_scale ({self.min_scale}) is above max_scale ({self.max_scale}); "
                "lower min_scale or raise max_scale"
            )
        return self


# --------------------------------------------------------------------------- revision


CONFIG_PATH = re.compile(
    r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,7}"
)
MAX_FILES = 20
MAX_FILES_BYTES = 256 * 1024


class ConfigFile(_Model):
    """A small configuration file an instance finds under ``$SOS_CONFIG_DIR`` (read-only)."""

    path: str = Field(
        max_length=400, description="Relative, like app.yaml or conf/model.json (no '..')"
    )
    content: str = Field(default="", max_length=65536, description="At most 64 KiB of text")
    redacted: bool = Field(
        default=False,
        description="Read-only: the content is hidden from the token that read it (only the "
        "owning team and admins see it); such a file cannot be sent back",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not CONFIG_PATH.fullmatch(value):
            raise ValueError(
                f"config file path {value!r} must be relative, made of parts of letters, "
                "digits, '.', '_' and '-' (not starting with '.' or '-'), at most 8 deep, "
                "like app.yaml or conf/model.json"
            )
        return value


def _files_bounded(value: list[ConfigFile]) -> list[ConfigFile]:
    paths = [f.path for f in value]
    if len(set(paths)) != len(paths):
        raise ValueError("a config file path is given twice")
    folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    clash = sorted(folders & set(paths))
    if clash:
        raise ValueError(f"{clash[0]!r} is both a config file and a folder of one")
    if sum(len(f.content.encode()) for f in value) > MAX_FILES_BYTES:
        raise ValueError("config files hold at most 256 KiB in all: put data in the artifact")
    return value


def _no_duplicate_env(value: list[EnvVar]) -> list[EnvVar]:
    seen: set[str] = set()
    for env in value:
        if env.id in seen:
            raise ValueError(f"environment variable {env.id!r} is set twice")
        seen.add(env.id)
    return value


#: ports an app cannot listen on: Knative's queue-proxy and its metrics take these
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091})


def _app_port(value: int | None) -> int | None:
    if value is not None and value in RESERVED_PORTS:
        raise ValueError(
            f"port {value} is reserved by the platform (Knative's queue-proxy uses "
            f"{', '.join(map(str, sorted(RESERVED_PORTS)))}; the local runtime's router is "
            "at 8012 inside each instance); choose another, e.g. 8080"
        )
    return value


class RevisionSpec(_Model):
    """What a user asks for in a revision. Immutable once created."""

    artifact: Artifact
    port: Annotated[int | None, AfterValidator(_app_port)] = Field(
        default=None,
        ge=1024,
        le=65535,
        description=(
            "The port the app listens on (it is also in $PORT). Default: whatever $PORT says "
            "(8080 on Knative and in a private local network). Ports below 1024 need a "
            "privilege no instance has."
        ),
    )
    env_vars: list[EnvVar] = Field(default_factory=list, max_length=200)
    files: list[ConfigFile] = Field(
        default_factory=list,
        max_length=MAX_FILES,
        description="Small config files, under $SOS_CONFIG_DIR (read-only) in each instance",
    )
    resources: Resources = Field(default_factory=Resources)
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    gunicorn_config: GunicornConfig = Field(default_factory=GunicornConfig)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    description: str = Field(default="", max_length=1000)

    @field_validator("env_vars")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        return _no_duplicate_env(value)

    @field_validator("files")
    @classmethod
    def _bounded_files(cls, value: list[ConfigFile]) -> list[ConfigFile]:
        return _files_bounded(value)

    def with_service_config(
        self, service_env: list[EnvVar], service_files: list[ConfigFile] | None = None
    ) -> RevisionSpec:
        """This spec with the service's environment and config files merged in: the
        service's first, then the revision's own, which win for a name (or path) both set.
        A revision records the merged spec, so it stays immutable and a rollback restores
        exactly what ran."""
        own = {var.id for var in self.env_vars}
        merged = [var for var in service_env if var.id not in own] + list(self.env_vars)
        mine = {f.path for f in self.files}
        files = [f for f in service_files or [] if f.path not in mine] + list(self.files)
        return self.model_copy(update={"env_vars": merged, "files": files})

    def spec(self) -> RevisionSpec:
        """Only what the user asked for (drops the server's read-only fields)."""
        return RevisionSpec.model_validate(self.model_dump(include=set(RevisionSpec.model_fields)))


class Revision(RevisionSpec):
    """A revision: its spec plus what the server assigned and observed."""

    id: str | None = Field(default=None, description="e.g. sfix-service-00003 (read-only)")
    service: str | None = None
    number: int | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    status: RevisionStatus = Field(default_factory=RevisionStatus)


# --------------------------------------------------------------------------- traffic


#: routes (and so tags) of one service's traffic: a split over more is no split anyone means
MAX_ROUTES = 100


class Route(_Model):
    """A share of a service's traffic for one revision, optionally reachable by a tag."""

    revision: str = Field(description="Revision id or number (3, 00003 or svc-00003)")
    percent: int = Field(ge=0, le=100)
    tag: TagName | None = None

    @field_validator("percent", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"percent must be a whole number, not {value}")
        return value


#: where a sticky split reads a request's key: ``header:X-User-Id``, ``query:user_id``,
#: ``cookie:uid``
SPLIT_BY = re.compile(r"^(?P<source>header|query|cookie):(?P<name>[A-Za-z0-9_.-]{1,100})$")
#: a JSON path to an answer's item ids, for comparing rankings: ``movieId`` (a list) or
#: ``items[].id`` style
ITEMS_PATH = re.compile(r"^[A-Za-z0-9_-]+(\[\])?(\.[A-Za-z0-9_-]+(\[\])?)*$")
MAX_SHADOWS = 3


class Shadow(_Model):
    """A revision that gets a mirrored copy of a share of the requests: its answers are
    compared with the primary's and discarded; it never delays or fails a caller."""

    revision: str = Field(description="Revision id or number (3, 00003 or svc-00003)")
    percent: int = Field(ge=1, le=100, description="The share of requests mirrored to it")
    items_path: str | None = Field(
        default=None,
        max_length=200,
        description="Where the item ids are in a JSON answer (``movieId``, "
        "``items[].item_id``); default: Flight's answer (its first column), else "
        "``items[].item_id`` or ``items[].id``",
    )

    @field_validator("items_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not ITEMS_PATH.fullmatch(value):
            raise ValueError(
                f"items_path {value!r} must be dotted names with [] after a list, like "
                "items[].item_id"
            )
        return value


class TrafficRoute(_Model):
    """How a service's traffic is split. Percents are whole numbers that sum to 100."""

    routes: list[Route] = Field(min_length=1, max_length=MAX_ROUTES)
    split_by: str | None = Field(
        default=None,
        max_length=110,
        description="Sticky split: the request key (header:NAME, query:NAME or cookie:NAME) "
        "that always reaches the same revision while the route is unchanged; requests "
        "without it are split per request",
    )
    shadow: list[Shadow] = Field(
        default_factory=list,
        max_length=MAX_SHADOWS,
        description="Revisions that get mirrored copies of requests (answers compared, discarded)",
    )
    resource_version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VERSION,
        description="The service's resource_version this route was read at; when sent, a "
        "newer change on the server makes the write fail with a conflict instead of losing it",
    )

    @field_validator("split_by")
    @classmethod
    def _split_by(cls, value: str | None) -> str | None:
        if value is not None and not SPLIT_BY.fullmatch(value):
            raise ValueError(
                f"split_by {value!r} must be header:NAME, query:NAME or cookie:NAME, like "
                "header:X-User-Id"
            )
        return value

    @model_validator(mode="after")
    def _split(self) -> TrafficRoute:
        total = sum(route.percent for route in self.routes)
        if total != 100:
            raise ValueError(f"traffic percents must sum to 100, these sum to {total}")
        counts = Counter(route.tag for route in self.routes if route.tag)
        duplicates = sorted(tag for tag, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"tag {duplicates[0]!r} is used by more than one route")
        return self


# --------------------------------------------------------------------------- service


class ServiceSpec(_Model):
    """What a user asks for in a service (``PUT /api/v1/services/{name}`` applies it)."""

    name: ServiceName
    team: TeamName
    description: str = Field(default="", max_length=2000)
    env_vars: list[EnvVar] = Field(
        default_factory=list,
        max_length=200,
        description="Set once on the service (`sos config set`): merged into every new "
        "revision when it is created; a revision's own variable of the same name wins",
    )
    files: list[ConfigFile] = Field(
        default_factory=list,
        max_length=MAX_FILES,
        description="Small config files set once on the service, merged into every new "
        "revision like env_vars (a revision's own file of the same path wins)",
    )

    @field_validator("env_vars")
    @classmethod
    def _unique_env(cls, value: list[EnvVar]) -> list[EnvVar]:
        return _no_duplicate_env(value)

    resource_version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_VERSION,
        description="Bumped by the server on every change to the service or its traffic. "
        "Send back the value you read to make a write conditional: if someone else changed "
        "the service meanwhile the write fails with 409 instead of losing their change. Send 0 "
        "to create a service only if it does not exist yet (409 if it does)",
    )


class Service(ServiceSpec):
    """A service: its spec plus what the server assigned and observed."""

    created_at: datetime | None = None
    created_by: str | None = None
    updated_at: datetime | None = None
    traffic: TrafficRoute | None = None
    latest_revision: str | None = None
    latest_revision_at: datetime | None = Field(
        default=None, description="When the latest revision was created (read-only)"
    )
    status: ServiceStatus = Field(default_factory=ServiceStatus)

    def spec(self) -> ServiceSpec:
        return ServiceSpec.model_validate(self.model_dump(include=set(ServiceSpec.model_fields)))


# --------------------------------------------------------------------------- history & auth

HistoryAction = Literal[
    "service.created",
    "service.updated",
    "service.deleted",
    "revision.created",
    "traffic.changed",
    "traffic.rollback",
    "rollout.started",
    "rollout.succeeded",
    "rollout.rolled_back",
    "rollout.stopped",
]


class HistoryEntry(_Model):
    """One recorded change: who did what, when."""

    id: int
    service: str
    at: datetime
    actor: str = Field(description="The token name that made the change")
    action: HistoryAction
    summary: str = Field(description="One line for people, e.g. 'traffic 00003=90 00002=10'")
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


Role = Literal["admin", "writer", "reader"]
ROLES: tuple[Role, ...] = ("admin", "writer", "reader")


class Token(_Model):
    """A bearer token as the server lists it (never the secret)."""

    id: str
    name: str
    role: Role
    team: str | None = Field(default=None, description="The team a writer may change")
    created_at: datetime
    created_by: str | None = None
    expires_at: datetime | None = Field(default=None, description="None: it never expires")
    last_used_at: datetime | None = Field(
        default=None, description="When it last authenticated a request (to the minute)"
    )


class TokenCreated(Token):
    """Returned once, when a token is created: the only time its secret is shown."""

    secret: str


TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class TokenSpec(_Model):
    """A request for a new token: admins create them (``sos token create``)."""

    name: str = Field(description="Who or what uses it, e.g. ci-recs or alice@example.com")
    role: Role = "writer"
    team: TeamName | None = Field(
        default=None, description="Required for writers: the one team whose services it changes"
    )
    expires_in_seconds: int | None = Field(
        default=None,
        ge=60,
        le=10 * 366 * 86400,
        description="It stops working this long after it is created (None: never)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOKEN_NAME.fullmatch(value):
            raise ValueError(
                f"token name {value!r} may hold letters, digits, '.', '_', '@' and '-', "
                "starting with a letter or digit, at most 100 characters"
            )
        return value

    @model_validator(mode="after")
    def _team_fits_role(self) -> TokenSpec:
        if self.role == "writer" and self.team is None:
            raise ValueError("a writer token needs a team: add --team NAME (team=...)")
        if self.role == "admin" and self.team is not None:
            raise ValueError("an admin token may change every team's services; drop the team")
        return self


# --------------------------------------------------------------------------- artifacts

Language = Literal["python", "node", "go", "jvm"]


class ArtifactMetadata(_Model):
    """What a build produced and the artifact store keeps (content-addressed by digest)."""

    name: str
    version: str
    language: Language
    runtime_version: str = Field(description="e.g. 3.11 for Python, 20 for Node, 17 for JVM")
    entry_point: str = Field(description="What starts it, e.g. app.main:app or the binary")
    digest: str = Field(description="sha256:<hex> of the artifact file")
    size: int = Field(ge=0)
    created_by: str
    created_at: datetime
    filename: str | None = Field(default=None, description="e.g. sfix_service-v0.0.16.pyz")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Builder-specific details (app kind, ...)"
    )
    pushed_by: str | None = Field(
        default=None, description="The token that pushed it to the server (read-only)"
    )
    pushed_at: datetime | None = Field(
        default=None, description="When it was pushed to the server (read-only)"
    )

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not DIGEST.fullmatch(value):
            raise ValueError(f"digest {value!r} must look like sha256:<64 lowercase hex digits>")
        return value


# --------------------------------------------------------------------------- wire-only views


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DesiredService:
    """Everything a backend needs to run one service, as the store holds it now: what the
    reconciler hands a backend (``sos.runtime.base.Backend.apply``), and, in JSON, what
    ``GET /api/v1/services/{name}/desired`` returns (without the secrets)."""

    service: Service
    revisions: tuple[Revision, ...]
    traffic: TrafficRoute | None = None
    artifacts: Mapping[str, ArtifactMetadata] = Field(
        default_factory=dict,
        description="Artifact metadata by digest, for every revision, when the server knows it",
    )
    #: the plain values of the secrets the revisions use (``EnvVar.secret``), for the
    #: instances only: never in the API's JSON, never in a repr (logs)
    secrets: Mapping[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    def secrets_used(self) -> set[str]:
        """Names of the secrets the revisions above use."""
        return {var.secret for r in self.revisions for var in r.env_vars if var.secret}

    def routable(self) -> set[str]:
        """Ids of revisions that receive traffic, carry a tag or shadow the traffic (a
        shadow gets mirrored copies: it is started and kept like a routed revision)."""
        if self.traffic is None:
            return set()
        routed = {r.revision for r in self.traffic.routes if r.percent > 0 or r.tag}
        return routed | {m.revision for m in self.traffic.shadow}


#: the name the API's desired state had when it was a model of its own
DesiredState = DesiredService


class DeployRequest(_Model):
    """The body of ``POST /api/v1/services/{name}/deploy``: a whole deploy, applied in one
    transaction (all of it or none of it).

    The service is applied like ``PUT /services/{name}``, except that the fields the body
    leaves out (``description``, ``env_vars``, ``files``) keep their current values. The
    revision is created unless the newest one already has exactly this spec (with the
    service's config merged in): a deploy is idempotent (``force`` creates one anyway). The
    traffic, when given, replaces the route; its ``latest`` names the revision this deploy
    created or kept."""

    service: ServiceSpec
    revision: RevisionSpec | None = None
    traffic: TrafficRoute | None = None
    force: bool = Field(
        default=False, description="Create a revision even when the newest has this spec"
    )
    change_team: bool = Field(
        default=False, description="Allow moving an existing service to the team this names"
    )
    dry_run: bool = Field(
        default=False, description="Check and plan everything, change nothing (200, not 201)"
    )


class DeployResult(_Model):
    """What a deploy changed (or, in a dry run, would change)."""

    service: Service
    revision: Revision | None = Field(
        default=None, description="The revision it created, or the newest one it kept"
    )
    created: bool = Field(description="True when the deploy created a revision")
    steps: list[str] = Field(description="What changed, in order, for people")
    dry_run: bool = False


RolloutState = Literal["running", "succeeded", "rolled_back", "stopped"]


class Rollout(_Model):
    """A rollout that stops itself (``POST /api/v1/services/{name}/rollout``): the server
    gives revision ``to`` each share in ``steps`` for ``step_seconds``, checks its own
    figures (5xx share, p99 latency) all along, and on a breach puts the route it started
    from back in one step."""

    to: str = Field(description="The candidate revision: 3, 00003 or its id", max_length=63)
    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100],
        min_length=1,
        max_length=20,
        description="The candidate's percent at each step, rising, ending at 100",
    )
    step_seconds: float = Field(default=60, ge=1, le=86400, description="How long each step")
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Roll back above this share of 5xx/no answer"
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, le=3_600_000, description="Roll back above this p99 latency"
    )
    min_requests: int = Field(
        default=20,
        ge=0,
        le=1_000_000_000,
        description="Requests the candidate must serve in a step before its figures count "
        "(a step with fewer does not pass, it waits)",
    )
    min_overlap: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Start only if the candidate, shadowed before (`sos shadow`), ranked at "
        "least this overlap@k with the primary over at least min_requests compared answers",
    )

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in steps):
            raise ValueError("each step is a percent from 1 to 100")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValueError(f"steps must rise, like 10,50,100, not {','.join(map(str, steps))}")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100 (the candidate gets all traffic)")
        return steps


class RolloutCheck(_Model):
    """The candidate's figures in the current step, as the rollout last read them."""

    at: datetime
    requests: int
    errors: int
    error_rate: float | None = None
    p99_ms: float | None = None


class RolloutStatus(_Model):
    """A service's rollout: where it is, and why it ended the way it did."""

    service: str
    spec: Rollout = Field(description="As asked, with ``to`` the revision id")
    state: RolloutState
    step: int = Field(description="Index into spec.steps of the current (or last) step")
    percent: int = Field(description="The candidate's share now")
    reason: str | None = Field(default=None, description="Why it ended, or what it waits for")
    started_at: datetime
    started_by: str
    step_started_at: datetime
    updated_at: datetime
    from_route: TrafficRoute = Field(description="The route a rollback returns to")
    route: TrafficRoute = Field(description="The route the rollout set last")
    last: RolloutCheck | None = None


class ShadowComparison(_Model):
    """What a shadow revision answered next to the primary, over the mirrored requests."""

    primary: str = Field(description="The revision that answered the callers")
    shadow: str = Field(description="The revision that got the mirrored copies")
    mirrored: int = Field(description="Requests copied to the shadow")
    dropped: int = Field(description="Requests not copied: the mirror queue was full")
    compared: int = Field(description="Mirrored requests whose answers were compared")
    status_agreement: float | None = Field(
        default=None, description="Share of compared answers with the same status class"
    )
    shadow_errors: int = Field(description="5xx or no answer from the shadow")
    primary_p50_ms: float | None = None
    shadow_p50_ms: float | None = None
    items_compared: int = Field(description="Compared answers where both carried item lists")
    k: int = Field(description="The k of overlap@k")
    overlap_at_k: float | None = Field(
        default=None, description="Mean share of the primary's top k in the shadow's top k"
    )
    rbo: float | None = Field(default=None, description="Mean rank-biased overlap (p=0.9)")
    top1_agreement: float | None = Field(
        default=None, description="Share of item answers with the same first item"
    )
    primary_empty_rate: float | None = None
    shadow_empty_rate: float | None = None


class ShadowReport(_Model):
    """``GET /api/v1/services/{name}/shadow``: every (primary, shadow) pair, live."""

    service: str
    available: bool = Field(description="False when the backend does not mirror requests")
    message: str | None = None
    pairs: list[ShadowComparison] = Field(default_factory=list)


class SecretValue(_Model):
    """The body of ``PUT /api/v1/teams/{team}/secrets/{name}``."""

    value: str = Field(min_length=1, max_length=65536, description="Write-only; at most 64 KiB")


class Secret(_Model):
    """A team's secret as the API shows it: never its value."""

    name: str
    team: str
    version: int = Field(description="1 when created, one more at each rotation")
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    updated_by: str | None = None


class ServerInfo(_Model):
    """What ``GET /api/v1/server`` says about the server."""

    version: str
    backend: str = Field(description="local, knative, ...")
    isolation: str = Field(description="How the code of different teams is kept apart")


# --------------------------------------------------------------------------- builds

BuildState = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
#: the states a build never leaves
BUILD_DONE: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})


class BuildStep(_Model):
    """One step of a build (``Inspect the project``, ``Resolve dependencies``...)."""

    name: str
    state: Literal["pending", "running", "done", "failed"] = "pending"
    detail: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BuildLock(_Model):
    """The lock file a remote build installed its dependencies from: the one in its source,
    or the one it resolved (``GET /api/v1/builds/{id}/lock`` gives its text, which
    ``sos build --remote`` writes beside the project)."""

    file: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Its name beside the manifest: requirements.lock, package-lock.json",
    )
    sha256: str = Field(description="sha256:<hex> of its bytes")
    size: int = Field(ge=0)
    written: bool = Field(
        description="The build resolved it: the source had none, or one that no longer "
        "matched its declarations or Python"
    )
    uploaded: str | None = Field(
        default=None,
        description="sha256:<hex> of the file of that name in the uploaded source; null: "
        "the source had none",
    )


class Build(_Model):
    """A remote build: a project's packed source, built on the server into an artifact
    (``POST /api/v1/builds``)."""

    id: str
    state: BuildState
    source_digest: str = Field(description="sha256:<hex> of the uploaded source archive")
    source_size: int = Field(ge=0)
    created_by: str = Field(description="The token that started it")
    team: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    position: int | None = Field(
        default=None, description="Place in the queue while queued (1: next to start)"
    )
    type: str | None = Field(default=None, description="python, node, go, jvm; None: detected")
    project: str = Field(
        default=".",
        description="Where the project is in the source (it also holds local path dependencies)",
    )
    frozen: bool = False
    builder: str = Field(default="", description="Where it runs: sandbox, process, knative")
    steps: list[BuildStep] = Field(default_factory=list)
    artifact: ArtifactMetadata | None = None
    reason: str | None = Field(default=None, description="Why it failed, stopped or timed out")
    log_digest: str | None = None
    timeout_seconds: float | None = None
    lock: BuildLock | None = Field(
        default=None, description="The lock file it installed from, once it succeeded"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What the user should know, said once (a lock file written: commit "
        "it); paths are relative to the project",
    )


class LogRecord(_Model):
    """One log line of a service, as ``GET /api/v1/services/{name}/logs`` streams it (NDJSON)."""

    at: datetime
    service: str
    revision: str
    instance: str
    stream: str = Field(description="stdout, stderr or platform")
    text: str


# --------------------------------------------------------------------------- metrics


class MetricsPoint(_Model):
    """One sampling interval of one revision, ending at ``at``."""

    at: float = Field(description="End of the interval, Unix time in seconds")
    requests_per_second: float
    errors_per_second: float = Field(description="5xx answers and requests without an answer")
    p50_ms: float | None = Field(description="Median latency; null without requests")
    p99_ms: float | None = Field(description="99th percentile latency; null without requests")
    in_flight: int
    instances_running: int | None = None
    instances_ready: int | None = None


class RevisionSeries(_Model):
    """One revision's points and totals over the window."""

    revision: str
    points: list[MetricsPoint]
    requests: int = Field(description="Requests answered within the window")
    errors: int = Field(description="Errors within the window")
    p50_ms: float | None = Field(description="Median latency over the whole window")
    p99_ms: float | None = Field(description="99th percentile latency over the whole window")
    instances: Instances | None = Field(description="Instances at the latest sample")

    @property
    def latest(self) -> MetricsPoint | None:
        """The newest point (the current rates), or None without any."""
        return self.points[-1] if self.points else None


class ServiceMetrics(_Model):
    """What ``GET /api/v1/services/{name}/metrics`` returns (``Client.metrics``)."""

    service: str
    window_seconds: float
    interval_seconds: float = Field(description="How often the server samples the backend")
    step_seconds: float = Field(
        description="The span of one point: the interval, or several merged for long windows"
    )
    retention_seconds: float = Field(description="How far back the server keeps samples")
    now: float = Field(description="The server's time, Unix seconds")
    available: bool = Field(description="False when the backend reports no metrics")
    message: str | None = None
    revisions: list[RevisionSeries]

    def revision(self, ref: str | int) -> RevisionSeries | None:
        """The series of one revision (a number, ``"00003"`` or an id), or None without
        samples of it in the window."""
        try:
            wanted = normalize_revision_ref(self.service, ref)
        except ValueError:
            return None
        return next((r for r in self.revisions if r.revision == wanted), None)
