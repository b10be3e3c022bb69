"""``sos export NAME``: a service as the Knative manifests SOS applies, in YAML.

For reading what SOS runs on Kubernetes, or for ``kubectl apply -f -`` elsewhere. The
cluster-side settings come from the same options and ``SOS_*`` variables as the server's
Knative backend (``--namespace`` / ``SOS_KNATIVE_NAMESPACE``, ``--image-registry`` /
``SOS_IMAGE_REGISTRY``, ``--artifact-url`` / ``SOS_KNATIVE_ARTIFACT_URL``).
"""

from __future__ import annotations

import sys

import typer
import yaml

from sos.cli import app
from sos.cli._output import EXIT_USAGE, client, fail, handle_errors
from sos.runtime.knative import ClusterState, KnativeSettings, export_yaml, plan_apply

__all__ = ["export"]


def _settings_comment(settings: KnativeSettings) -> str:
    """Which cluster-side settings the manifest was rendered with (they are not the
    server's own unless the same options or SOS_* variables are given here)."""
    namespace = settings.namespace or "none: kubectl's current one"
    url = settings.artifact_url or "NONE: pods cannot download the artifact"
    return (
        f"# namespace: {namespace} (--namespace, SOS_KNATIVE_NAMESPACE)\n"
        f"# image registry: {settings.image_registry} (--image-registry, SOS_IMAGE_REGISTRY)\n"
        f"# artifact URL: {url} (--artifact-url, SOS_KNATIVE_ARTIFACT_URL)\n"
    )


def _steps_yaml(steps: list[dict[str, object]], waits: list[str | None]) -> str:
    parts = []
    for index, (manifest, wait) in enumerate(zip(steps, waits, strict=True), start=1):
        if wait is not None:
            note = (
                f"# Step {index} of {len(steps)}: creates revision {wait}. Apply it, then wait "
                f"until `kubectl get revision {wait}` finds it before the next step\n"
            )
        else:
            note = f"# Step {index} of {len(steps)}: the service as SOS runs it\n"
        body = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
        parts.append(note + body)
    return "---\n".join(parts)


@app.command()
@handle_errors
def export(
    name: str = typer.Argument(..., help="The service."),
    namespace: str = typer.Option(
        None, "--namespace", "-n", help="Kubernetes namespace [env SOS_KNATIVE_NAMESPACE]."
    ),
    image_registry: str = typer.Option(
        None,
        "--image-registry",
        help="Where the runtime images are [env SOS_IMAGE_REGISTRY; localhost:5000/sos].",
    ),
    artifact_url: str = typer.Option(
        None,
        "--artifact-url",
        help="The SOS server as pods reach it, or a URL with {digest} "
        "[env SOS_KNATIVE_ARTIFACT_URL].",
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="Print the steps that build the service in an empty cluster: one per "
        "revision the traffic needs, oldest first, then the service.",
    ),
) -> None:
    """Print a service as the Knative Service manifest SOS applies (YAML).

    The template is the latest revision; traffic pins each route to its revision by name.
    In a cluster where SOS already runs the service, the older revisions exist; to recreate
    the service elsewhere, use --from-scratch.
    """
    try:
        settings = KnativeSettings.from_env(
            None, namespace=namespace, image_registry=image_registry, artifact_url=artifact_url
        )
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    with client() as c:
        desired = c.desired(name)
    if from_scratch:
        steps = plan_apply(desired, settings, ClusterState())
        text = _steps_yaml([s.manifest for s in steps], [s.wait_for for s in steps])
    else:
        text = export_yaml(desired, settings)
    sys.stdout.write(_settings_comment(settings) + text)
