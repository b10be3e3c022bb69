"""Pins the public API of ``sos``: adding a name is a decision, removing one breaks users."""

from __future__ import annotations

import sos

EXPECTED = {
    "Artifact", "ArtifactMetadata", "AuthenticationError", "Autoscaling", "BackendError",
    "Client", "Condition", "ConflictError", "DeployRequest", "DeployResult", "EnvVar",
    "GunicornConfig", "HealthCheck",
    "HistoryEntry", "Instances", "LogRecord", "MetricsPoint", "NotFoundError", "NotReadyError",
    "PayloadTooLargeError", "PermissionDeniedError", "Resources", "Revision",
    "RevisionFailedError", "RevisionSeries", "RevisionSpec", "RevisionStatus", "Rollout",
    "RolloutCheck", "RolloutStatus", "Route",
    "SOSError", "ServerError", "ServerUnavailableError", "Service", "ServiceMetrics",
    "ServiceSpec", "ServiceStatus", "Shadow", "ShadowComparison", "ShadowReport", "Token",
    "TokenCreated", "TokenSpec", "TrafficRoute",
    "TrafficTarget", "ValidationError", "__version__", "normalize_revision_ref",
}  # fmt: skip


def test_public_names_are_exactly_these() -> None:
    assert set(sos.__all__) == EXPECTED
    for name in sos.__all__:
        assert hasattr(sos, name), name


def test_every_error_is_an_sos_error() -> None:
    for name in sos.__all__:
        value = getattr(sos, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, sos.SOSError), name
