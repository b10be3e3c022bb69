"""The candidate set as the engine holds it: columns in one table, plus ordered row positions.

This is Flight's low layer for operators that want arrays instead of DataFrames. The engine
builds one :class:`Table` per request (the union of includes minus excludes, with every
source's columns merged by item key) and then narrows and reorders *row positions* into
it; filters never copy the table. :class:`Candidates` is the read-only view an operator sees.
Built-in operators use it directly; user operators get ``candidates.frame()``, a DataFrame
whose index holds those row positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.extensions import ExtensionArray

from flight.errors import ColumnNotFoundError

if TYPE_CHECKING:
    from flight._interning import Interner

__all__ = ["Array", "Candidates", "Rows", "Table", "take"]

Array: TypeAlias = np.ndarray[Any, Any] | ExtensionArray
"""A column: a numpy array or a pandas extension array (strings, categoricals, nullable ints)."""

Rows: TypeAlias = npt.NDArray[np.intp]
"""Row positions into a table, in candidate order."""


def take(values: Array, positions: Rows) -> Array:
    """``values`` at ``positions`` (all valid), keeping the dtype."""
    if isinstance(values, np.ndarray):
        return values[positions]
    return values.take(positions)


def take_fill(values: Array, positions: Rows) -> Array:
    """``values`` at ``positions`` where -1 means missing (NaN/NA; ints become floats)."""
    if isinstance(values, np.ndarray):
        return pd.api.extensions.take(values, positions, allow_fill=True)
    return values.take(positions, allow_fill=True)


def as_array(values: Any) -> Array:
    """Unwrap a Series/Index/list into a numpy or extension array without copying when possible."""
    if isinstance(values, pd.Series | pd.Index):
        return values.array if not isinstance(values.dtype, np.dtype) else values.to_numpy()
    if isinstance(values, np.ndarray | ExtensionArray):
        return values
    return np.asarray(values)


class Table:
    """Columns of equal length, keyed by item; ``codes`` are the items' interned codes."""

    __slots__ = ("_rng", "codes", "columns", "interner", "item_type", "n")

    def __init__(
        self,
        item_type: str,
        columns: dict[str, Array],
        codes: Rows | None = None,
        interner: Interner | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self._rng = rng
        self.item_type = item_type
        self.columns = columns
        self.codes = codes
        self.interner = interner
        self.n = len(columns[item_type])

    @property
    def rng(self) -> np.random.Generator:
        """The engine's random generator (a fresh one outside a pipeline)."""
        if self._rng is None:
            self._rng = np.random.default_rng()
        return self._rng

    def set_columns(self, values: dict[str, Array | None], rows: Rows, identity: bool) -> None:
        """Write columns given at ``rows`` (``None`` drops a column)."""
        inverse: Rows | None = None
        for name, col in values.items():
            if col is None:
                self.columns.pop(name, None)
                continue
            if len(col) != len(rows):
                raise ValueError(f"column {name!r} has {len(col)} values for {len(rows)} rows")
            if identity:
                self.columns[name] = col
            elif isinstance(col, np.ndarray) and col.dtype != object:
                full = np.empty(self.n, dtype=col.dtype)
                full[rows] = col
                self.columns[name] = full
            else:
                if inverse is None:
                    inverse = np.full(self.n, -1, dtype=np.intp)
                    inverse[rows] = np.arange(len(rows), dtype=np.intp)
                self.columns[name] = take_fill(col, inverse)


class Candidates:
    """Read-only view of the current candidates: a :class:`Table` and ordered row positions.

    ``len(c)`` items; ``c.column(name)`` the values of a column in candidate order;
    ``c.keys()`` the item ids; ``c.frame()`` a DataFrame (index = row positions) for
    code that prefers pandas. Fast operators return *local* positions ``0..len(c)-1``.
    """

    __slots__ = ("_cache", "_frame", "_inverse", "identity", "rows", "table")

    def __init__(self, table: Table, rows: Rows, identity: bool = False) -> None:
        self.table = table
        self.rows = rows
        self.identity = identity
        self._cache: dict[str, Array] = {}
        self._frame: pd.DataFrame | None = None
        self._inverse: Rows | None = None

    @classmethod
    def from_frame(cls, df: pd.DataFrame, item_type: str | None = None) -> Candidates:
        """A view over a plain DataFrame (for calling built-in operators outside a pipeline)."""
        columns: dict[str, Array] = {str(c): as_array(df[c]) for c in df.columns}
        key = item_type or (str(df.index.name) if df.index.name is not None else "__key__")
        if key not in columns:
            columns = {key: as_array(df.index), **columns}
        table = Table(key, columns)
        view = cls(table, np.arange(len(df), dtype=np.intp), identity=True)
        return view

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def item_type(self) -> str:
        return self.table.item_type

    @property
    def rng(self) -> np.random.Generator:
        """The engine's random generator, for operators without a seed of their own."""
        return self.table.rng

    @property
    def columns(self) -> list[str]:
        return list(self.table.columns)

    def __contains__(self, name: object) -> bool:
        return name in self.table.columns

    def column(self, name: str) -> Array:
        """Values of column ``name`` in candidate order (ColumnNotFoundError lists the columns)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        try:
            base = self.table.columns[name]
        except KeyError:
            raise ColumnNotFoundError(
                f"no column {name!r}; the candidates have: {', '.join(self.table.columns)}"
            ) from None
        col = base if self.identity else take(base, self.rows)
        self._cache[name] = col
        return col

    def numeric(self, name: str) -> npt.NDArray[np.float64]:
        """Column ``name`` as float64 (NaN for missing), for scoring and thresholds."""
        col = self.column(name)
        if isinstance(col, np.ndarray) and col.dtype.kind in "fiub":
            return col.astype(np.float64, copy=False)
        return pd.to_numeric(pd.Series(col, copy=False), errors="raise").to_numpy(
            dtype=np.float64, na_value=np.nan
        )

    def keys(self) -> Array:
        """The item ids in candidate order."""
        return self.column(self.table.item_type)

    def codes(self) -> Rows | None:
        """Interned codes of the items (``None`` outside a pipeline)."""
        if self.table.codes is None:
            return None
        return self.table.codes if self.identity else self.table.codes[self.rows]

    def frame(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """A DataFrame of the candidates; its index holds row positions (labels to return)."""
        if columns is None and self._frame is not None:
            return self._frame.copy(deep=False)
        names = list(self.table.columns) if columns is None else list(columns)
        for name in names:
            base = self.table.columns.get(name)
            if isinstance(base, np.ndarray) and base.dtype == object:
                # pandas infers a dtype for an object column (strings become its str dtype)
                # each time a frame is made of it, which costs more than the frame itself:
                # the table keeps what it infers, once per run
                self.table.columns[name] = as_array(pd.Series(base, copy=False))
                self._cache.pop(name, None)
        df = pd.DataFrame(
            {name: self.column(name) for name in names},
            index=pd.Index(self.rows, copy=False),
            copy=False,
        )
        if columns is None:
            self._frame = df
            return df.copy(deep=False)
        return df

    def inverse(self) -> Rows:
        """Map from table row to local position (-1 where not a candidate)."""
        if self._inverse is None:
            inv = np.full(self.table.n, -1, dtype=np.intp)
            inv[self.rows] = np.arange(len(self.rows), dtype=np.intp)
            self._inverse = inv
        return self._inverse

    def select(self, local: Rows) -> Candidates:
        """A new view of the rows at local positions ``local`` (in that order)."""
        return Candidates(self.table, self.rows[local])
