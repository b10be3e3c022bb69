"""Interning item ids to dense integer codes: per pipeline run (:meth:`Interner.for_run`,
what the engine uses), or stable for the life of the process (:func:`interner_for`).

Set algebra and merges by key become array indexing once every id has a small integer
code: a union is a mark in a boolean array, a merge is a gather. Small non-negative integer
ids (the common case: catalogue ids) use a direct lookup table; any other ids (strings,
large or negative integers) use a pandas hash index. One interner exists per item type.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from flight.candidates import Array, Rows

__all__ = ["Interner", "interner_for"]

_DIRECT_MIN = 1 << 16
_DIRECT_MAX = 1 << 25  # at most 32M table entries (256 MB) for direct lookup


class Interner:
    """Maps item ids to codes ``0..size-1`` in order of first sight; never forgets."""

    def __init__(self, item_type: str, max_size: int = 20_000_000) -> None:
        self.item_type = item_type
        self.max_size = max_size
        self._lock = threading.Lock()
        self._table: np.ndarray[Any, np.dtype[np.int64]] | None = np.full(
            _DIRECT_MIN, -1, dtype=np.int64
        )
        self._index: pd.Index | None = None  # hash mode
        self._ids: np.ndarray[Any, Any] = np.empty(1024, dtype=np.int64)
        self.size = 0

    @classmethod
    def for_run(cls, item_type: str, arrays: list[Array]) -> tuple[Interner, list[Rows]]:
        """Codes for the ids of one pipeline run only (``pd.factorize``: first-seen order),
        with each array's codes. Its cost is that of the run's ids, whatever ids earlier
        runs saw (a process-wide interner grew with every id ever seen, and one large id
        made every later run slower)."""
        self = cls.__new__(cls)
        self.item_type = item_type
        self.max_size = 1 << 62
        self._lock = threading.Lock()
        self._table = None
        lengths = [len(a) for a in arrays]
        joined = np.concatenate([np.asarray(a) for a in arrays]) if arrays else np.empty(0)
        codes, uniques = pd.factorize(joined, sort=False, use_na_sentinel=False)
        self._ids = np.asarray(uniques)
        self._index = pd.Index(self._ids, copy=False)
        self.size = len(self._ids)
        parts = np.split(codes.astype(np.intp, copy=False), np.cumsum(lengths)[:-1])
        return self, list(parts)

    def __repr__(self) -> str:
        mode = "direct" if self._table is not None else "hash"
        return f"Interner({self.item_type!r}, size={self.size}, {mode})"

    @property
    def full(self) -> bool:
        return self.size >= self.max_size

    def ids(self, codes: Rows) -> Array:
        """The ids with these codes."""
        return self._ids[codes]

    def intern(self, ids: Array) -> Rows:
        """Codes for ``ids`` (new ids get new codes)."""
        values = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
        with self._lock:
            codes = self._lookup(values)
            if len(codes) and codes.min() < 0:
                self._add(values[codes < 0])
                codes = self._lookup(values)
            return codes

    def lookup(self, ids: Array) -> Rows:
        """Codes for ``ids`` without adding new ones (-1 for unknown ids)."""
        values = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
        with self._lock:
            return self._lookup(values)

    # -- internals (lock held) ------------------------------------------------------------

    def _fits_direct(self, values: np.ndarray[Any, Any]) -> bool:
        if values.dtype.kind not in "iu":
            return len(values) == 0
        if len(values) == 0:
            return True
        lo, hi = int(values.min()), int(values.max())
        return lo >= 0 and hi < _DIRECT_MAX

    def _lookup(self, values: np.ndarray[Any, Any]) -> Rows:
        table = self._table
        if table is not None:
            if not self._fits_direct(values):
                self._to_hash()
                return self._lookup(values)
            if len(values) == 0:
                return np.empty(0, dtype=np.intp)
            hi = int(values.max())
            if hi >= len(table):
                out = np.full(len(values), -1, dtype=np.intp)
                inside = values < len(table)
                out[inside] = table[values[inside]]
                return out
            codes: Rows = table[values].astype(np.intp, copy=False)
            return codes
        assert self._index is not None
        found: Rows = self._index.get_indexer(pd.Index(values)).astype(np.intp, copy=False)
        return found

    def _add(self, new: np.ndarray[Any, Any]) -> None:
        fresh = pd.unique(new)  # first-seen order
        start, end = self.size, self.size + len(fresh)
        if end > len(self._ids):
            grown = np.empty(max(end, 2 * len(self._ids)), dtype=self._ids.dtype)
            grown[:start] = self._ids[:start]
            self._ids = grown
        if self._table is not None:
            hi = int(fresh.max())
            if hi >= len(self._table):
                size = len(self._table)
                while size <= hi:
                    size *= 2
                table = np.full(min(size, _DIRECT_MAX), -1, dtype=np.int64)
                table[: len(self._table)] = self._table
                self._table = table
            self._table[fresh] = np.arange(start, end, dtype=np.int64)
            self._ids[start:end] = fresh
        else:
            if self._ids.dtype != object and np.asarray(fresh).dtype != self._ids.dtype:
                self._ids = self._ids.astype(object)
            self._ids[start:end] = fresh
            self._index = pd.Index(self._ids[:end], copy=True)
        self.size = end

    def _to_hash(self) -> None:
        self._table = None
        self._ids = self._ids.astype(object)
        self._index = pd.Index(self._ids[: self.size], dtype=object, copy=True)


_interners: dict[str, Interner] = {}
_registry_lock = threading.Lock()


def interner_for(item_type: str) -> Interner:
    """The process-wide interner for ``item_type`` (replaced by a fresh one once full)."""
    interner = _interners.get(item_type)
    if interner is None or interner.full:
        with _registry_lock:
            interner = _interners.get(item_type)
            if interner is None or interner.full:
                interner = Interner(item_type)
                _interners[item_type] = interner
    return interner
