"""Interaction data sets: the seam that lets ``flight eval`` evaluate any pipeline without
leakage.

Operators that learn from what users did (popularity, co-occurrence, "already rated", a
trained model) read those interactions through this module instead of opening files
themselves::

    flight.register_interactions("ratings", lambda: pd.read_csv(DATA / "ratings.csv"))

    class PopularMovies(fo.SourceOperator):
        async def __call__(self, **ctx):
            counts = flight.derived("ratings", count_by_movie)   # built once per view
            ...

In serving, :func:`interactions` is the registered data set, loaded once per process. While
``flight eval`` runs, it is the **training split** only (:func:`evaluating` swaps the view),
so nothing an operator computes through this module can see a held-out interaction.
:func:`derived` caches what operators build from a view (an index, a model) and rebuilds it
when the view changes, so the swap reaches derived structures too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from flight.errors import FlightError

__all__ = [
    "DataError",
    "aderived",
    "derived",
    "evaluating",
    "interactions",
    "interactions_names",
    "register_interactions",
    "unregister_interactions",
]

T = TypeVar("T")
Loader = Callable[[], pd.DataFrame]


class DataError(FlightError):
    """An interaction data set is unknown, cannot be read, or is used wrongly."""


class _DataSet:
    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.frame: pd.DataFrame | None = None


_lock = threading.RLock()
_sets: dict[str, _DataSet] = {}
_overrides: dict[str, pd.DataFrame] = {}
_generation = 0  # bumped whenever a view changes: derived values of older views are stale
_derived: dict[tuple[str, Callable[..., Any]], tuple[int, Any]] = {}


def register_interactions(
    name: str,
    source: pd.DataFrame | Loader | str | os.PathLike[str],
    *,
    replace: bool = False,
) -> None:
    """Register the interaction data set ``name``: a DataFrame, a function returning one
    (called once, on first use), or a CSV file path (read on first use)."""
    if not name or not isinstance(name, str):
        raise DataError("an interaction data set needs a non-empty name")
    loader: Loader
    if isinstance(source, pd.DataFrame):
        frame = source
        loader = lambda: frame  # noqa: E731
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        loader = lambda: _read_csv(path)  # noqa: E731
    elif callable(source):
        loader = source
    else:
        raise DataError(
            f"interactions {name!r}: expected a DataFrame, a CSV path or a function, "
            f"got {type(source).__name__}"
        )
    global _generation
    with _lock:
        if name in _sets and not replace:
            raise DataError(
                f"interactions {name!r} are already registered; pass replace=True to replace them"
            )
        _sets[name] = _DataSet(loader)
        _generation += 1


def unregister_interactions(name: str) -> None:
    global _generation
    with _lock:
        _sets.pop(name, None)
        _generation += 1


def interactions_names() -> list[str]:
    with _lock:
        return sorted(_sets)


def interactions(name: str) -> pd.DataFrame:
    """The current view of data set ``name``: all of it when serving, the training split
    while :func:`evaluating` (treat it as read-only)."""
    with _lock:
        if name in _overrides:
            return _overrides[name]
        found = _sets.get(name)
        if found is None:
            known = ", ".join(sorted(_sets)) or "none"
            raise DataError(
                f"no interaction data set {name!r} is registered (registered: {known}); "
                f"register it with flight.register_interactions({name!r}, ...)"
            )
        if found.frame is None:
            frame = found.loader()
            if not isinstance(frame, pd.DataFrame):
                raise DataError(
                    f"the loader of interactions {name!r} returned {type(frame).__name__}, "
                    "not a pandas DataFrame"
                )
            found.frame = frame
        return found.frame


def derived(name: str, build: Callable[[pd.DataFrame], T]) -> T:
    """``build(interactions(name))``, computed once per view of the data set and cached.

    Use it for everything an operator learns from interactions (counts, indexes, a trained
    model): when ``flight eval`` swaps in a training split, the value is rebuilt from it."""
    key = (name, build)
    with _lock:
        generation = _generation
        cached = _derived.get(key)
        if cached is not None and cached[0] == generation:
            value: T = cached[1]
            return value
        value = build(interactions(name))
        _derived[key] = (generation, value)
        return value


async def aderived(name: str, build: Callable[[pd.DataFrame], T]) -> T:
    """:func:`derived` from async code: a value not built yet for the current view is built
    in a worker thread, so the event loop keeps serving meanwhile."""
    key = (name, build)
    cached = _derived.get(key)
    if cached is not None and cached[0] == _generation:
        value: T = cached[1]
        return value
    return await asyncio.to_thread(derived, name, build)


@contextlib.contextmanager
def evaluating(views: Mapping[str, pd.DataFrame]) -> Iterator[None]:
    """Within the block, :func:`interactions` returns ``views[name]`` for each name given
    (process-wide: evaluation runs alone in its process), and :func:`derived` rebuilds."""
    global _generation
    with _lock:
        unknown = [n for n in views if n not in _sets]
        if unknown:
            known = ", ".join(sorted(_sets)) or "none"
            raise DataError(
                f"cannot evaluate with interactions {', '.join(map(repr, unknown))}: the "
                f"pipelines registered no such data set (registered: {known})"
            )
        if _overrides:
            raise DataError("an evaluation is already running in this process")
        _overrides.update(views)
        _generation += 1
    try:
        yield
    finally:
        with _lock:
            _overrides.clear()
            _generation += 1
            _derived.clear()


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"interactions file {path} not found")
    return pd.read_csv(path)
