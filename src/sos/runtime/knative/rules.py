"""The rules Knative's admission webhook enforces on a Service beyond its CRD schema.

``check_webhook_rules`` returns one readable problem per broken rule (empty when Knative
would accept the manifest). The renderer runs it on everything it produces, so a manifest
Knative would refuse becomes a clear SOS error before anything reaches the cluster.

Sources: knative/serving ``pkg/apis/serving/v1/*_validation.go``,
``pkg/apis/serving/k8s_validation.go`` and ``pkg/apis/autoscaling/annotation_validation.go``.
Cluster-dependent limits (``max-scale-limit``, ``allow-zero-initial-scale``,
``container-concurrency-max-limit``) are checked against Knative's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_webhook_rules", "parse_duration"]

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
#: queue-proxy and profiling ports inside every Knative pod
RESERVED_PORTS = frozenset({8008, 8012, 8013, 8022, 9090, 9091})
PORT_NAMES = frozenset({"", "h2c", "http1"})
MAX_CONTAINER_CONCURRENCY = 1000  # config-defaults container-concurrency-max-limit
KNATIVE_PREFIX = "serving.knative.dev/"
AUTOSCALING = "autoscaling.knative.dev/"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

Problems = list[str]


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration (``60s``, ``1m30s``, ``0s``); None if it is not one."""
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            return None
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    return total if text else None


def _dns_label(value: Any, where: str) -> Problems:
    if not isinstance(value, str) or len(value) > 63 or not DNS_1035.fullmatch(value):
        return [f"{where}: {value!r} is not a DNS-1035 label (a-z, 0-9, '-', at most 63)"]
    return []


def _number(
    annotations: Mapping[str, Any],
    key: str,
    low: float,
    high: float | None,
    parse: Callable[[str], float] = float,
) -> Problems:
    raw = annotations.get(AUTOSCALING + key)
    if raw is None:
        return []
    where = f"annotation {AUTOSCALING}{key}"
    try:
        value = parse(str(raw))
    except ValueError:
        return [f"{where}: {raw!r} is not a number"]
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        return [f"{where}: {raw} must be {bound}"]
    return []


def _window(annotations: Mapping[str, Any], key: str, low: float) -> Problems:
    raw = annotations.get(AUTOSCALING + key)
    if raw is None:
        return []
    where = f"annotation {AUTOSCALING}{key}"
    seconds = parse_duration(str(raw))
    if seconds is None:
        return [f"{where}: {raw!r} is not a duration like 60s"]
    if not low <= seconds <= 3600:
        return [f"{where}: {raw} must be between {low:g}s and 1h"]
    if not float(seconds).is_integer():
        return [f"{where}: {raw} must be whole seconds"]
    return []


def _check_autoscaling(annotations: Mapping[str, Any]) -> Problems:
    problems: Problems = []
    for key in ("min-scale", "max-scale", "initial-scale"):
        problems += _number(annotations, key, 0, 2**31 - 1, parse=int)
    if not problems:
        low = int(annotations.get(AUTOSCALING + "min-scale", 0))
        high = int(annotations.get(AUTOSCALING + "max-scale", 0))
        if high and high < low:
            problems.append(f"max-scale={high} is less than min-scale={low}")
    problems += _number(annotations, "target", 0.01, None)
    problems += _number(annotations, "target-utilization-percentage", 1, 100)
    problems += _number(annotations, "panic-window-percentage", 1, 100)
    problems += _number(annotations, "panic-threshold-percentage", 110, 1000)
    problems += _window(annotations, "window", 6)
    problems += _window(annotations, "scale-down-delay", 0)
    return problems


def _check_probe(probe: Any, where: str, port: Mapping[str, Any], readiness: bool) -> Problems:
    if probe is None:
        return []
    problems: Problems = []
    handlers = [key for key in ("httpGet", "tcpSocket", "exec", "grpc") if key in probe]
    if len(handlers) != 1:
        problems.append(f"{where}: exactly one of httpGet, tcpSocket, exec, grpc is needed")
    probe_port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
    if probe_port is not None and probe_port not in (port.get("name"), port.get("containerPort")):
        problems.append(f"{where}: probe port {probe_port!r} must match the container port")
    period = probe.get("periodSeconds", 0)
    if readiness and period == 0:
        problems += [
            f"{where}: {key} is disallowed when periodSeconds is zero"
            for key in ("failureThreshold", "timeoutSeconds")
            if probe.get(key)
        ]
    else:
        problems += [
            f"{where}: {key} must be at least 1"
            for key in ("timeoutSeconds", "failureThreshold")
            if probe.get(key, 1) < 1
        ]
    if readiness and probe.get("successThreshold", 1) < 1:
        problems.append(f"{where}: successThreshold must be at least 1")
    if not readiness and probe.get("successThreshold", 1) != 1:
        problems.append(f"{where}: successThreshold of a liveness probe must be 1")
    return problems


def _check_container(container: Mapping[str, Any], where: str) -> Problems:
    problems: Problems = []
    if container.get("name") == "queue-proxy":
        problems.append(f"{where}.name: 'queue-proxy' is reserved by Knative")
    if not container.get("image"):
        problems.append(f"{where}.image: an image is required")
    for index, env in enumerate(container.get("env") or []):
        if env.get("name") in RESERVED_ENV:
            problems.append(f"{where}.env[{index}]: {env.get('name')!r} is set by Knative")
    ports = container.get("ports") or []
    if len(ports) > 1:
        problems.append(f"{where}.ports: Knative serves exactly one port")
    port: Mapping[str, Any] = ports[0] if ports else {"name": "http", "containerPort": 8080}
    if port.get("name", "") not in PORT_NAMES:
        problems.append(f"{where}.ports[0].name: must be empty, 'http1' or 'h2c'")
    number = port.get("containerPort", 8080)
    if number in RESERVED_PORTS or not 0 < number <= 65535:
        problems.append(f"{where}.ports[0].containerPort: {number} is reserved or invalid")
    problems += _check_probe(container.get("readinessProbe"), f"{where}.readinessProbe", port, True)
    problems += _check_probe(container.get("livenessProbe"), f"{where}.livenessProbe", port, False)
    return problems


def _check_labels(labels: Mapping[str, Any] | None, where: str) -> Problems:
    return [
        f"{where}: label {key!r} uses the prefix {KNATIVE_PREFIX}, which Knative reserves"
        for key in (labels or {})
        if key.startswith(KNATIVE_PREFIX)
    ]


def _check_traffic(service: str, traffic: list[Mapping[str, Any]]) -> Problems:
    problems: Problems = []
    tags: list[str] = []
    total = 0
    for index, target in enumerate(traffic):
        where = f"spec.traffic[{index}]"
        revision = target.get("revisionName")
        if target.get("configurationName"):
            problems.append(f"{where}: a Service's traffic may not name a configuration")
        if revision and target.get("latestRevision", False):
            problems.append(f"{where}: latestRevision must be false when revisionName is set")
        if not revision and target.get("latestRevision") is False:
            problems.append(f"{where}: latestRevision: false needs a revisionName")
        if revision and not str(revision).startswith(service + "-"):
            problems.append(f"{where}.revisionName: {revision!r} is not a revision of {service}")
        if "url" in target:
            problems.append(f"{where}.url: set by Knative in status, not allowed in spec")
        percent = target.get("percent", 0)
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            problems.append(f"{where}.percent: {percent!r} must be a whole number 0-100")
        else:
            total += percent
        tag = target.get("tag")
        if tag is not None:
            problems += _dns_label(tag, f"{where}.tag")
            tags.append(tag)
            host = f"{tag}-{service}"
            if len(host) > 63:
                problems.append(
                    f"{where}.tag: the tag URL's host label {host!r} is {len(host)} characters; "
                    "DNS allows 63: use a shorter tag"
                )
    if traffic and total != 100:
        problems.append(f"spec.traffic: percents sum to {total}, they must sum to 100")
    for tag in sorted({tag for tag in tags if tags.count(tag) > 1}):
        problems.append(f"spec.traffic: tag {tag!r} is used by more than one target")
    return problems


def check_webhook_rules(manifest: Mapping[str, Any]) -> list[str]:
    """What Knative's webhook would refuse in a ``serving.knative.dev/v1`` Service."""
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name", "")
    problems = _dns_label(name, "metadata.name")
    problems += _check_labels(metadata.get("labels"), "metadata.labels")
    if any(str(key).startswith(AUTOSCALING) for key in metadata.get("annotations") or {}):
        problems.append(
            "metadata.annotations: autoscaling annotations belong on spec.template.metadata"
        )
    spec = manifest.get("spec") or {}
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    revision = template_meta.get("name")
    if revision is not None:
        problems += _dns_label(revision, "spec.template.metadata.name")
        if not str(revision).startswith(f"{name}-"):
            problems.append(
                f"spec.template.metadata.name: {revision!r} must have the prefix {name + '-'!r}"
            )
    problems += _check_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    problems += _check_autoscaling(template_meta.get("annotations") or {})
    pod = template.get("spec") or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        problems.append("spec.template.spec.containers: exactly one container is needed")
    for index, container in enumerate(containers):
        problems += _check_container(container, f"spec.template.spec.containers[{index}]")
    concurrency = pod.get("containerConcurrency", 0)
    if not 0 <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        problems.append(
            f"spec.template.spec.containerConcurrency: {concurrency} must be between 0 and "
            f"{MAX_CONTAINER_CONCURRENCY}"
        )
    problems += _check_traffic(name, list(spec.get("traffic") or []))
    return problems
