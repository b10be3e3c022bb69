"""Flight: real-time recommendation pipelines built from small operators.

>>> from flight import Pipeline
>>> import flight.operators as fo
>>> pipeline = Pipeline("recs", item_type="movieId").initialize(
...     includes=[PopularMovies()], excludes=[AlreadyRated()]) | fo.Sort("score", desc=True)
>>> result = await pipeline.execute(user_id=1, return_cols=["movieId", "score"])

Serve it: ``app = flight.App("recs", configs="pipelines/")`` with ``@app.endpoint("/recs")``
functions, then ``flight serve module:app``. Observability lives in ``flight.tracing``,
``flight.metrics`` and ``flight.logs``; ``flight.http`` is the HTTP client for sources.
"""

from typing import TYPE_CHECKING, Any

from flight.data import (
    aderived,
    derived,
    interactions,
    register_interactions,
    unregister_interactions,
)
from flight.deadline import Deadline, deadline, time_left
from flight.engine import Engine, default_engine, set_default_engine
from flight.errors import (
    ConfigError,
    EndpointDefinitionError,
    ExecuteError,
    FlightError,
    OperatorError,
    PipelineDefinitionError,
    SourceError,
    UnknownPipelineError,
)
from flight.hooks import Hooks, LoggingHook, OperatorStats, RunInfo, add_hook, remove_hook
from flight.operators.base import SourcePolicy
from flight.pipeline import Pipeline
from flight.providers import (
    AttributeProvider,
    TableProvider,
    get_provider,
    register_provider,
    unregister_provider,
)
from flight.result import Result

if TYPE_CHECKING:
    from flight.serving import App

__all__ = [
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


def __getattr__(name: str) -> Any:
    # the serving layer (FastAPI, uvicorn) is imported when first used, not with flight
    if name == "App":
        from flight.serving import App

        return App
    raise AttributeError(f"module 'flight' has no attribute {name!r}")
