import sos.runtime.local


def test_local_runtime_exports_are_pinned() -> None:
    assert sorted(sos.runtime.local.__all__) == [
        "Autoscaler",
        "Decision",
        "Endpoint",
        "LocalBackend",
        "RevisionTarget",
        "Router",
        "RoutingTable",
        "ServiceRoute",
        "create_backend",
    ]
