"""The public surface of ``sos.runtime.knative``."""

from __future__ import annotations

import subprocess
import sys

import sos.runtime.knative as knative


def test_exported_names_are_pinned_and_all_resolve() -> None:
    assert knative.__all__ == [
        "FIELD_MANAGER",
        "ClusterState",
        "KnativeBackend",
        "KnativeSettings",
        "Step",
        "check_webhook_rules",
        "create_backend",
        "export_yaml",
        "map_api_error",
        "observed_service",
        "plan_apply",
        "render_service",
        "runtime_image",
    ]
    for name in knative.__all__:
        assert getattr(knative, name) is not None


def test_rendering_does_not_load_the_kubernetes_client() -> None:
    # every `sos` command imports `sos export`; the kubernetes client takes ~0.2 s to import
    code = (
        "import sys, sos.cli.export, sos.runtime.knative; "
        "print(any(m.split('.')[0] == 'kubernetes' for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
