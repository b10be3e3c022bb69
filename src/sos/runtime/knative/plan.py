"""How one apply drives Knative towards an SOS service with several revisions.

A Knative Service's ``spec.template`` describes one revision; Knative's Configuration
controller creates a Revision (named by ``spec.template.metadata.name``) whenever the
template changes, and keeps older ones while something references them (SOS marks its
revisions ``serving.knative.dev/no-gc`` so they stay until the service is deleted). So:

- the template is the latest SOS revision; traffic pins every target by name;
- a revision that traffic needs but the cluster lacks (a new cluster, a deleted Knative
  Service, a revision removed by hand) is created first, oldest first, by applying the
  Service with that revision as its template and waiting until Knative has created it;
  the final apply puts the latest revision back;
- a revision that exists in the cluster is never rendered again: its template is taken
  from the cluster (the Service's own template if it names it, else rebuilt from the
  Revision), because Knative refuses a changed template under the same name and a
  Revision's spec is immutable. Changing the image registry or upgrading SOS therefore
  never breaks an existing revision; it applies to revisions created afterwards.

``plan_apply`` is pure: the cluster state in, the manifests to apply (in order) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sos.models import normalize_revision_ref
from sos.runtime.base import DesiredService
from sos.runtime.knative.render import (
    Manifest,
    latest_revision,
    render_revision_template,
    render_service,
    revision_number,
)
from sos.runtime.knative.rules import KNATIVE_PREFIX
from sos.runtime.knative.settings import KnativeSettings

__all__ = ["ClusterState", "Step", "is_applied", "plan_apply", "template_from_revision"]

_KEPT_KNATIVE_ANNOTATIONS = frozenset({"serving.knative.dev/no-gc"})


@dataclass(frozen=True)
class ClusterState:
    """What the cluster holds for one service.

    ``template`` is the Knative Service's current ``spec.template`` (None when there is no
    Knative Service); ``revisions`` maps each existing Revision's name to a template that
    describes it (``template_from_revision``).
    """

    template: Mapping[str, Any] | None = None
    revisions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def template_name(self) -> str | None:
        if self.template is None:
            return None
        name = (self.template.get("metadata") or {}).get("name")
        return str(name) if name else None


@dataclass(frozen=True)
class Step:
    """One server-side apply; ``wait_for`` names the revision Knative must create before
    the next step (None for the last step)."""

    manifest: Manifest
    wait_for: str | None = None


def template_from_revision(revision: Mapping[str, Any]) -> Manifest:
    """A template that makes Knative reuse an existing Revision object: its immutable spec,
    and the labels and annotations that came from a template (not the ones Knative adds)."""
    metadata = revision.get("metadata") or {}
    labels = {
        key: value
        for key, value in (metadata.get("labels") or {}).items()
        if not key.startswith(KNATIVE_PREFIX)
    }
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if not key.startswith(KNATIVE_PREFIX) or key in _KEPT_KNATIVE_ANNOTATIONS
        if not key.startswith("kubectl.kubernetes.io/")
    }
    template_meta: Manifest = {"name": metadata.get("name")}
    if labels:
        template_meta["labels"] = labels
    if annotations:
        template_meta["annotations"] = annotations
    return {"metadata": template_meta, "spec": dict(revision.get("spec") or {})}


def plan_apply(
    desired: DesiredService, settings: KnativeSettings, cluster: ClusterState
) -> list[Step]:
    """The applies that bring the cluster to ``desired``, in order (see the module doc)."""
    name = desired.service.name
    latest = latest_revision(desired)
    by_id = {rev.id: rev for rev in desired.revisions}
    routable = set()
    for ref in desired.routable():
        try:
            routable.add(normalize_revision_ref(name, ref))
        except ValueError:
            continue  # render_traffic reports it with the route's position
    missing = sorted(
        (
            by_id[rev_id]
            for rev_id in routable
            if rev_id in by_id and rev_id != latest.id and rev_id not in cluster.revisions
        ),
        key=revision_number,
    )

    def template_for(rev_id: str) -> Mapping[str, Any]:
        if cluster.template is not None and cluster.template_name == rev_id:
            return cluster.template
        if rev_id in cluster.revisions:
            return cluster.revisions[rev_id]
        return render_revision_template(desired, by_id[rev_id], settings)

    steps = [
        Step(render_service(desired, settings, template=template_for(str(rev.id))), str(rev.id))
        for rev in missing
    ]
    steps.append(Step(render_service(desired, settings, template=template_for(str(latest.id)))))
    return steps


def is_applied(manifest: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether the cluster's Knative Service already is ``manifest`` (so applying it again
    would change nothing): the same template and traffic, and SOS's labels in place.

    Exact equality is right for both: a template is either the one the cluster holds
    (``plan_apply`` reuses it) or a new revision; traffic targets carry no defaults."""
    if current is None:
        return False
    spec, have = manifest.get("spec") or {}, current.get("spec") or {}
    labels = (current.get("metadata") or {}).get("labels") or {}
    wanted = (manifest.get("metadata") or {}).get("labels") or {}
    return (
        have.get("template") == spec.get("template")
        and have.get("traffic") == spec.get("traffic")
        and all(labels.get(key) == value for key, value in wanted.items())
    )
