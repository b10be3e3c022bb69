"""What the Knative backend needs to know about the cluster it renders for.

Every setting has an environment variable, so that ``sos server --backend knative`` and
``sos export`` read the same configuration::

    SOS_KNATIVE_NAMESPACE       namespace of the Knative Services (default: the kubeconfig
                                context's namespace, or the pod's namespace, or "default")
    SOS_KNATIVE_DOMAIN          the cluster's Knative domain, e.g. example.com; only used for
                                URLs before Knative reports its own
    SOS_IMAGE_REGISTRY          where the curated runtime images are pushed
                                (default localhost:5000/sos: a local registry, never a
                                public namespace SOS does not own)
    SOS_KNATIVE_ARTIFACT_URL    how pods download an artifact: a URL with {digest} in it, or
                                the SOS server URL as pods reach it (the artifact route is
                                appended)
    SOS_KNATIVE_BUILD_URL       the SOS server's URL as remote-build Jobs reach it (default:
                                SOS_KNATIVE_ARTIFACT_URL when that is the server's URL)
    SOS_KNATIVE_ARTIFACT_TOKEN_SECRET   name of a Secret whose key "token" holds a reader
                                token for the artifact store (optional)
    SOS_KNATIVE_KUBECONFIG      kubeconfig file (default: $KUBECONFIG or ~/.kube/config)
    SOS_KNATIVE_CONTEXT         kubeconfig context (default: the current one)
    SOS_KNATIVE_INSTANCE        which SOS server the Knative Services belong to (label
                                sos.dev/instance, default "sos"): a server deletes the ones
                                of its instance that it no longer knows, never others
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import ValidationError as PydanticValidationError
from pydantic import model_validator

from sos.runtime.registry import BackendFlag, BackendOptions, BackendPlugin, option_error

__all__ = ["ARTIFACT_ROUTE", "DEFAULT_REGISTRY", "PLUGIN", "KnativeSettings"]

#: the SOS server route that serves an artifact's bytes by digest
ARTIFACT_ROUTE = "/api/v1/blobs/{digest}"
DEFAULT_REGISTRY = "localhost:5000/sos"

_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.:_-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV = {
    "namespace": "SOS_KNATIVE_NAMESPACE",
    "domain": "SOS_KNATIVE_DOMAIN",
    "image_registry": "SOS_IMAGE_REGISTRY",
    "artifact_url": "SOS_KNATIVE_ARTIFACT_URL",
    "artifact_token_secret": "SOS_KNATIVE_ARTIFACT_TOKEN_SECRET",
    "build_url": "SOS_KNATIVE_BUILD_URL",
    "kubeconfig": "SOS_KNATIVE_KUBECONFIG",
    "context": "SOS_KNATIVE_CONTEXT",
    "instance": "SOS_KNATIVE_INSTANCE",
    "team_namespaces": "SOS_KNATIVE_TEAM_NAMESPACES",
}


class KnativeSettings(BackendOptions):
    """Cluster-side settings of the Knative backend (the renderer's only other input), and
    its options: each setting is a ``--backend-opt`` (``image-registry`` works too) or the
    environment variable above."""

    label: ClassVar[str] = "Knative"
    env: ClassVar[Mapping[str, str]] = _ENV

    namespace: str | None = None
    domain: str | None = None
    image_registry: str = DEFAULT_REGISTRY
    artifact_url: str | None = None
    artifact_token_secret: str | None = None
    build_url: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    instance: str = "sos"
    #: a prefix: each team's services, revisions and secrets go to namespace PREFIX + team
    #: (created when missing); None: every team in ``namespace``
    team_namespaces: str | None = None

    def namespace_of(self, team: str) -> str | None:
        """The namespace of ``team``'s services when teams get their own, else None."""
        return None if self.team_namespaces is None else self.team_namespaces + team

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if len(self.instance) > 63 or not _LABEL_VALUE.fullmatch(self.instance):
            raise ValueError(
                f"instance {self.instance!r} must be a Kubernetes label value: letters, "
                "digits, '-', '_' and '.', at most 63 characters (like 'sos-staging')"
            )
        if self.namespace is not None and (
            len(self.namespace) > 63 or not _NAMESPACE.fullmatch(self.namespace)
        ):
            raise ValueError(
                f"Knative namespace {self.namespace!r} must be a DNS label: lowercase letters, "
                "digits and '-', at most 63 characters (like 'sos-services')"
            )
        prefix = self.team_namespaces
        if prefix is not None and (len(prefix) > 20 or not _NAMESPACE.fullmatch(prefix + "x")):
            raise ValueError(
                f"team namespace prefix {prefix!r} must start a DNS label: lowercase letters, "
                "digits and '-', at most 20 characters (like 'sos-')"
            )
        if not _REGISTRY.fullmatch(self.image_registry.rstrip("/")):
            raise ValueError(
                f"image registry {self.image_registry!r} must look like host[:port]/path, "
                "e.g. registry.example.com/sos or localhost:5000/sos (lowercase, no tag)"
            )
        secret = self.artifact_token_secret
        if secret is not None and (len(secret) > 253 or not _SECRET.fullmatch(secret)):
            raise ValueError(
                f"artifact token Secret name {secret!r} must be a DNS subdomain name: "
                "lowercase letters, digits, '-' and '.' (like 'sos-artifact-reader')"
            )
        url = self.artifact_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(
                f"artifact URL {url!r} must start with http:// or https:// (the address at "
                "which pods reach the SOS server, e.g. http://sos.sos-system.svc:8700)"
            )
        build = self.build_url
        if build is not None and (not build.startswith(("http://", "https://")) or "{" in build):
            raise ValueError(
                f"build URL {build!r} must be the SOS server's address as build Jobs reach "
                "it, starting with http:// or https:// (e.g. http://sos.sos-system.svc:8700)"
            )
        return self

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: str | None
    ) -> KnativeSettings:
        """Settings from ``SOS_*`` environment variables; ``overrides`` that are not None win
        (command-line options use them)."""
        source = os.environ if env is None else env
        unknown = set(overrides) - set(_ENV)
        if unknown:
            raise TypeError(f"unknown Knative settings: {sorted(unknown)}")

        given = {key: value for key, value in overrides.items() if value}
        try:
            return cls.model_validate(cls.gather(given, source))
        except PydanticValidationError as exc:
            raise ValueError(option_error(exc)[1]) from None

    def control_url(self) -> str | None:
        """The SOS server's URL as a build Job reaches it: ``build_url``, else the artifact
        URL when it is the server's (no ``{digest}`` in it); None when neither says."""
        if self.build_url is not None:
            return self.build_url.rstrip("/")
        if self.artifact_url is not None and "{digest}" not in self.artifact_url:
            return self.artifact_url.rstrip("/")
        return None

    def artifact_download_url(self, digest: str) -> str | None:
        """The URL a pod downloads the artifact ``digest`` from, or None when not configured."""
        if self.artifact_url is None:
            return None
        if "{digest}" in self.artifact_url:
            return self.artifact_url.replace("{digest}", digest)
        return self.artifact_url.rstrip("/") + ARTIFACT_ROUTE.format(digest=digest)


PLUGIN = BackendPlugin(
    name="knative",
    factory="sos.runtime.knative.backend:create_backend",
    options=KnativeSettings,
    flags=(
        BackendFlag(
            "--knative-namespace",
            "namespace",
            "Namespace of the Knative Services [env SOS_KNATIVE_NAMESPACE; the kubeconfig "
            "context's].",
        ),
        BackendFlag(
            "--knative-domain",
            "domain",
            "The cluster's Knative domain, for URLs Knative has not reported yet "
            "[env SOS_KNATIVE_DOMAIN].",
        ),
        BackendFlag(
            "--image-registry",
            "image_registry",
            "Registry of the curated runtime images [env SOS_IMAGE_REGISTRY; localhost:5000/sos].",
        ),
        BackendFlag(
            "--knative-artifact-url",
            "artifact_url",
            "This server's URL as pods reach it, for artifact downloads "
            "[env SOS_KNATIVE_ARTIFACT_URL].",
        ),
    ),
    description="SOS services as Knative Serving Services on Kubernetes (needs kubernetes)",
)
