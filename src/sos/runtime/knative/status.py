"""What Knative reports, read back into SOS terms (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sos.models import Instances
from sos.runtime.base import ObservedRevision, ObservedService

__all__ = ["observed_revision", "observed_service"]


def _condition(obj: Mapping[str, Any], kind: str = "Ready") -> Mapping[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return {}


def observed_revision(revision: Mapping[str, Any], url: str | None = None) -> ObservedRevision:
    """One Knative Revision: ready, failed (Ready=False: Knative gave up, e.g. the image
    cannot be pulled or the container exits) or deploying (Ready=Unknown)."""
    status = revision.get("status") or {}
    ready = _condition(revision)
    state = ready.get("status", "Unknown")
    if state == "True":
        reason, message = "Ready", None
    else:
        reason = ready.get("reason") or ("Failed" if state == "False" else "Deploying")
        message = ready.get("message")
    replicas = int(status.get("actualReplicas") or 0)
    return ObservedRevision(
        id=str((revision.get("metadata") or {}).get("name")),
        ready=state == "True",
        reason=str(reason),
        message=message,
        instances=Instances(
            wanted=int(status.get("desiredReplicas") or 0), running=replicas, ready=replicas
        ),
        url=url,
        failed=state == "False",
    )


def observed_service(
    service: Mapping[str, Any],
    revisions: Iterable[Mapping[str, Any]],
    *,
    domain: str | None = None,
) -> ObservedService:
    """A Knative Service and its Revisions as SOS sees them.

    Until Knative has processed the latest change (``observedGeneration`` behind
    ``generation``) the service is reported as deploying, never as ready on stale status.
    ``domain`` fills in URLs Knative has not reported yet.
    """
    metadata = service.get("metadata") or {}
    status = service.get("status") or {}
    name = str(metadata.get("name"))
    namespace = metadata.get("namespace") or "default"
    ready = _condition(service)
    current = status.get("observedGeneration") == metadata.get("generation")
    if not current:
        is_ready, reason = False, "Deploying"
        message: str | None = "Knative has not processed the latest change yet"
    elif ready.get("status") == "True":
        is_ready, reason, message = True, "Ready", None
    else:
        is_ready = False
        reason = str(ready.get("reason") or "Deploying")
        message = ready.get("message")

    url = status.get("url") or (f"http://{name}.{namespace}.{domain}" if domain else None)
    tag_urls: dict[str, str] = {}
    for target in status.get("traffic") or []:
        if target.get("tag") and target.get("url"):
            tag_urls[target["tag"]] = target["url"]
    if domain:
        for target in (service.get("spec") or {}).get("traffic") or []:
            tag = target.get("tag")
            if tag and tag not in tag_urls:
                tag_urls[tag] = f"http://{tag}-{name}.{namespace}.{domain}"
    revision_urls: dict[str, str] = {}
    for target in list(status.get("traffic") or []) + list(
        (service.get("spec") or {}).get("traffic") or []
    ):
        tag, revision = target.get("tag"), target.get("revisionName")
        if tag in tag_urls and revision:
            revision_urls.setdefault(revision, tag_urls[tag])

    observed = {}
    for revision in revisions:
        rev_name = str((revision.get("metadata") or {}).get("name"))
        observed[rev_name] = observed_revision(revision, revision_urls.get(rev_name))
    return ObservedService(
        name=name,
        ready=is_ready,
        reason=reason,
        message=message,
        url=url,
        revisions=observed,
        tag_urls=tag_urls,
    )
