"""Attribute providers: where ``fo.Hydrate`` gets item columns from.

A provider answers "these columns for these item ids". Register one per item type (its
default name) or under any name, and ``Hydrate(columns, provider=name)`` pulls from it::

    flight.register_provider(TableProvider(movies, key="movieId"))   # name: "movieId"
    flight.register_provider("movieId", lambda: TableProvider(load_movies(), key="movieId"))

:class:`TableProvider` serves an in-memory DataFrame and is the fast path: it caches the
mapping from interned item codes to its rows, so hydrating is one gather per column.
Implement :class:`AttributeProvider` (``lookup`` may be async) for anything else, such as a
feature store.

Packages contribute providers through entry points of group ``flight.providers``
(``name = "package.module:factory"``: a zero-argument factory, or a provider), imported
and called the first time ``name`` is asked for.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import numpy as np
import pandas as pd

from flight._interning import Interner
from flight.candidates import Array, Rows, as_array, take, take_fill
from flight.errors import ProviderError

__all__ = [
    "ENTRY_POINT_GROUP",
    "AttributeProvider",
    "TableProvider",
    "get_provider",
    "provider_names",
    "register_provider",
    "unregister_provider",
]


class AttributeProvider(abc.ABC):
    """Columns of items, looked up by item id."""

    #: the item key this provider serves (its default registry name)
    item_type: str = ""

    @property
    @abc.abstractmethod
    def columns(self) -> Sequence[str]:
        """Names of the columns this provider can return."""

    @abc.abstractmethod
    def lookup(
        self, ids: Array, columns: Sequence[str]
    ) -> Mapping[str, Any] | pd.DataFrame | Awaitable[Mapping[str, Any] | pd.DataFrame]:
        """Columns for ``ids``, aligned with them (same length and order; NA where unknown)."""

    def lookup_codes(
        self, interner: Interner, codes: Rows, ids: Array, columns: Sequence[str]
    ) -> Mapping[str, Any] | pd.DataFrame | Awaitable[Mapping[str, Any] | pd.DataFrame]:
        """Like :meth:`lookup`, given the run's codes of the ids too (codes are per run: a
        cache by code lasts one run; :class:`TableProvider` looks ids up directly)."""
        return self.lookup(ids, columns)

    def check_columns(self, columns: Sequence[str], name: str) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ProviderError(
                f"provider {name!r} has no column {', '.join(map(repr, missing))}; "
                f"it has: {', '.join(self.columns)}"
            )


class TableProvider(AttributeProvider):
    """Serves the columns of an in-memory DataFrame keyed by ``key`` (a column or the index).

    String columns with few distinct values (at most half the rows) are stored as
    categoricals, which makes hydrating and grouping on them cheap; pass
    ``categorize=False`` to keep them as they are.
    """

    def __init__(self, frame: pd.DataFrame, key: str | None = None, categorize: bool = True):
        if key is None:
            if frame.index.name is None:
                raise ProviderError("TableProvider needs key= or a DataFrame with a named index")
            key = str(frame.index.name)
        if key in frame.columns:
            keys = frame[key]
            data = frame.drop(columns=[key])
        elif frame.index.name == key:
            keys = frame.index.to_series()
            data = frame
        else:
            raise ProviderError(
                f"TableProvider: no key column {key!r}; columns: {', '.join(map(str, frame))}"
            )
        index = pd.Index(keys)
        if not index.is_unique:
            dupes = index[index.duplicated()].unique()[:5].tolist()
            raise ProviderError(f"TableProvider: key {key!r} has duplicate ids, e.g. {dupes}")
        self.item_type = key
        self._index = index
        self._columns: dict[str, Array] = {}
        for name in data.columns:
            col = data[name]
            if categorize and _is_stringish(col) and col.nunique() <= len(col) // 2:
                col = col.astype("category")
            self._columns[str(name)] = as_array(col)

    @property
    def columns(self) -> Sequence[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, ids: Array, columns: Sequence[str]) -> dict[str, Array]:
        rows = self._index.get_indexer(np.asarray(ids)).astype(np.intp, copy=False)
        return self._gather(rows, columns)

    def _gather(self, rows: Rows, columns: Sequence[str]) -> dict[str, Array]:
        self.check_columns(columns, self.item_type)
        complete = bool(len(rows) == 0 or rows.min() >= 0)
        pick = take if complete else take_fill
        return {name: pick(self._columns[name], rows) for name in columns}


def _is_stringish(col: pd.Series) -> bool:
    return bool(pd.api.types.is_string_dtype(col.dtype) or col.dtype == object)


ProviderFactory = Callable[[], AttributeProvider]

ENTRY_POINT_GROUP = "flight.providers"

_lock = threading.Lock()
_providers: dict[str, AttributeProvider | ProviderFactory] = {}
_plugins_loaded = False


def _from_entry_point(entry: EntryPoint) -> ProviderFactory:
    def make() -> AttributeProvider:
        loaded = entry.load()
        made: AttributeProvider = loaded if isinstance(loaded, AttributeProvider) else loaded()
        return made

    return make


def _load_plugins() -> None:
    """Add every ``flight.providers`` entry point once, as a factory (nothing is imported
    yet); a provider registered in code under the same name wins."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            _providers.setdefault(entry.name, _from_entry_point(entry))


def register_provider(
    name_or_provider: str | AttributeProvider,
    provider: AttributeProvider | ProviderFactory | None = None,
    *,
    replace: bool = False,
) -> None:
    """Register a provider under its item type, or under ``name``.

    ``provider`` may be a zero-argument factory, called once on first use (load data lazily).
    Registering a second provider under a taken name is an error unless ``replace=True``.
    """
    if isinstance(name_or_provider, AttributeProvider):
        provider, name = name_or_provider, name_or_provider.item_type
    else:
        name = name_or_provider
    if not name or provider is None:
        raise ProviderError(
            "register_provider needs a provider with an item_type, or a name and a provider"
        )
    with _lock:
        existing = _providers.get(name)
        if existing is not None and existing is not provider and not replace:
            raise ProviderError(
                f"a provider is already registered as {name!r} ({existing!r}); pass "
                f"replace=True to swap it for {provider!r}"
            )
        _providers[name] = provider


def unregister_provider(name: str) -> None:
    """Remove the provider registered as ``name`` (no error when there is none)."""
    with _lock:
        _providers.pop(name, None)


def get_provider(name: str) -> AttributeProvider:
    """The provider registered as ``name`` (a factory is called the first time)."""
    entry = _providers.get(name)
    if entry is None:
        _load_plugins()
        entry = _providers.get(name)
    if entry is None:
        known = ", ".join(sorted(_providers)) or "none"
        raise ProviderError(
            f"no attribute provider registered as {name!r} (registered: {known}); call "
            f"flight.register_provider(...) before hydrating"
        )
    if isinstance(entry, AttributeProvider):
        return entry
    with _lock:
        entry = _providers[name]
        if not isinstance(entry, AttributeProvider):
            made = entry()
            if not isinstance(made, AttributeProvider):
                raise ProviderError(f"provider factory for {name!r} returned {made!r}")
            _providers[name] = made
            entry = made
        return entry


def provider_names() -> list[str]:
    _load_plugins()
    with _lock:
        return sorted(_providers)
