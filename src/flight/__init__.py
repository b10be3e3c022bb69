"""Flight: real-time recommendation pipelines built from small operators.

>>> from flight import Pipeline
>>> import flight.operators as fo
>>> pipeline = Pipeline("recs", item_type="movieId").initialize(
...     includes=[PopularMovies()], excludes=[AlreadyRated()]) | fo.Sort("score", desc=True)
>>> result = await pipeline.execute(user_id=1, return_cols=["movieId", "score"])
"""

from flight.engine import Engine, default_engine, set_default_engine
from flight.errors import (
    ConfigError,
    ExecuteError,
    FlightError,
    OperatorError,
    PipelineDefinitionError,
    SourceError,
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

__all__ = [
    "AttributeProvider",
    "ConfigError",
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
    "add_hook",
    "default_engine",
    "get_provider",
    "register_provider",
    "remove_hook",
    "set_default_engine",
    "unregister_provider",
]
