"""The one error family of Flight.

::

    FlightError                      anything Flight reports to a user
    ├── OperatorDefinitionError      an operator class is malformed (a non-primitive field, ...)
    ├── OperatorArgumentError        an operator was given a missing or wrongly typed argument
    ├── RegistryError                operator names
    │   ├── OperatorNameClashError   two classes want the same name (names both classes)
    │   └── UnknownOperatorError     no operator registered under a name (suggests close ones)
    ├── ProviderError                attribute providers: unknown name, clash, missing column
    ├── ColumnNotFoundError          an operator asked for a column the candidates lack
    ├── PipelineDefinitionError      a pipeline built wrongly (a source used as a step, no includes)
    ├── ConfigError                  a pipeline config failed validation (file, pipeline, field)
    ├── ExecuteError                 ``execute()`` was called wrongly (missing context, bad
    │                                ``return_cols``); raised before anything runs
    ├── EndpointDefinitionError      a function cannot be served as an endpoint (untyped or
    │                                reserved parameter, a path served twice)
    ├── UnknownPipelineError         no pipeline of that name is served (suggests close ones)
    └── OperatorError                an operator failed while the pipeline ran; never raised by
        │                            ``execute()``, reported as ``result.error`` with the operator
        ├── SourceError              a source kept failing or timing out after its retries
        └── ResultShapeError         an operator returned something of the wrong shape
                                     (no key column, rows it was not given, ...)

Errors raised before a pipeline runs say what was wrong, where (file, pipeline, field,
operator) and what to do. Errors while it runs are caught by the engine and reported in the
result, so a bad request never takes a server down with a bare traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flight.operators.base import Operator

__all__ = [
    "ColumnNotFoundError",
    "ConfigError",
    "EndpointDefinitionError",
    "ExecuteError",
    "FlightError",
    "OperatorArgumentError",
    "OperatorDefinitionError",
    "OperatorError",
    "OperatorNameClashError",
    "PipelineDefinitionError",
    "ProviderError",
    "RegistryError",
    "ResultShapeError",
    "SourceError",
    "UnknownOperatorError",
    "UnknownPipelineError",
]


class FlightError(Exception):
    """Base of every error Flight raises or reports."""


class OperatorDefinitionError(FlightError, TypeError):
    """An operator class cannot be used as defined (for example a field that is not primitive)."""


class OperatorArgumentError(FlightError, ValueError):
    """An operator was constructed with a missing, unknown or wrongly typed argument."""


class RegistryError(FlightError):
    """Something about operator names in the registry."""


class OperatorNameClashError(RegistryError):
    """Two different operator classes claim the same registry name."""


class UnknownOperatorError(RegistryError, KeyError):
    """No operator is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProviderError(FlightError):
    """An attribute provider is unknown, clashes with another, or lacks a column."""


class ColumnNotFoundError(FlightError, KeyError):
    """An operator asked for a column the candidates do not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PipelineDefinitionError(FlightError, ValueError):
    """A pipeline was assembled wrongly in Python."""


class ConfigError(FlightError, ValueError):
    """A pipeline config failed validation; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems or []


class ExecuteError(FlightError, ValueError):
    """``execute()`` was called with missing context or bad options; nothing ran.
    ``problems`` lists ``(context key, message, input)`` for a context that failed the
    pipeline's declaration; ``missing`` maps each context key the call lacks (sorted) to the
    operators that need it."""

    def __init__(
        self,
        message: str,
        problems: list[tuple[str, str, Any]] | None = None,
        *,
        missing: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str, Any]] = problems or []
        self.missing: dict[str, list[str]] = missing or {}


class EndpointDefinitionError(FlightError, TypeError):
    """A function cannot be served as an endpoint as written."""


class UnknownPipelineError(FlightError, KeyError):
    """No pipeline is served under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OperatorError(FlightError):
    """An operator failed while the pipeline ran. ``operator`` is the one that failed."""

    def __init__(self, message: str, operator: Operator | None = None) -> None:
        super().__init__(message)
        self.operator = operator


class SourceError(OperatorError):
    """A source operator kept failing or timing out after its retries."""

    def __init__(
        self, message: str, operator: Operator | None = None, *, timed_out: bool = False
    ) -> None:
        super().__init__(message, operator)
        self.timed_out = timed_out


class ResultShapeError(OperatorError):
    """An operator returned a value of the wrong shape for its kind."""


class ItemTypeMismatchError(ResultShapeError):
    """Sources returned item ids of different types (numbers and strings): they would never
    match each other, so the union, the merge and the excludes would be silently wrong."""
