"""The public surface: what `flight` and `flight.operators` export."""

from __future__ import annotations

import flight
import flight.operators as fo


def test_flight_exports_are_pinned() -> None:
    assert sorted(flight.__all__) == [
        "App",
        "AttributeProvider",
        "ConfigError",
        "Deadline",
        "EndpointDefinitionError",
        "Engine",
        "ExecuteError",
        "FlightError",
        "Hooks",
        "LoggingHook",
        "OperatorError",
        "OperatorStats",
        "Pipeline",
        "PipelineDefinitionError",
        "Result",
        "RunInfo",
        "SourceError",
        "SourcePolicy",
        "TableProvider",
        "UnknownPipelineError",
        "add_hook",
        "aderived",
        "deadline",
        "default_engine",
        "derived",
        "get_provider",
        "interactions",
        "register_interactions",
        "register_provider",
        "remove_hook",
        "set_default_engine",
        "time_left",
        "unregister_interactions",
        "unregister_provider",
    ]
    assert all(hasattr(flight, name) for name in flight.__all__)


def test_serving_exports_are_pinned() -> None:
    import flight.serving

    assert sorted(flight.serving.__all__) == ["App", "PipelineCatalog", "PipelineEntry"]
    assert flight.App is flight.serving.App


def test_operator_exports_are_pinned() -> None:
    assert sorted(fo.__all__) == sorted(
        [
            "UNSET",
            "Candidates",
            "Dedupe",
            "DiverseSample",
            "FilterOperator",
            "Head",
            "Hydrate",
            "IndexOperator",
            "LimitPerGroup",
            "Match",
            "ModelScore",
            "Operator",
            "Rename",
            "SamplerOperator",
            "Shuffle",
            "Sort",
            "SortOperator",
            "Source",
            "SourceOperator",
            "SourcePolicy",
            "Threshold",
            "TransformOperator",
            "WeightedScore",
            "get_operator",
            "operator_names",
            "register",
            "warn",
        ]
    )
    assert all(hasattr(fo, name) for name in fo.__all__)


def test_error_tree_has_one_root() -> None:
    from flight import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FlightError)
    assert "FlightError" in (errors.__doc__ or "")
