"""The result of one pipeline run."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from flight.errors import FlightError
from flight.hooks import OperatorStats

__all__ = ["Result", "jsonable"]

RESERVED_KEYS = ("reason", "debug", "warnings", "partial", "cut")


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    """What ``await pipeline.execute(...)`` returns.

    ``items``: a DataFrame of the requested ``return_cols`` in order (empty when nothing
    came through). ``reason``: ``None`` when items were returned, otherwise why not (which
    operator took the candidates to zero, or which one failed). ``stats``: one
    :class:`OperatorStats` per include, exclude and step. ``warnings``: optional sources the
    pipeline continued without. ``error``: the :class:`OperatorError` when an operator
    failed. ``debug``: the per-operator trace when ``debug=True`` was passed. ``cut``: the
    sources the request deadline stopped (see :mod:`flight.deadline`); ``partial`` says
    whether some source's candidates are missing from the items (cut or skipped).
    """

    pipeline: str
    item_type: str
    items: pd.DataFrame
    reason: str | None
    stats: tuple[OperatorStats, ...]
    n_candidates: int
    warnings: tuple[str, ...] = ()
    error: FlightError | None = None
    debug: list[dict[str, Any]] | None = None
    run_id: str = ""
    elapsed_ms: float = 0.0
    summary_column: str | None = None
    cut: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no operator failed (an empty result can still be ok)."""
        return self.error is None

    @property
    def partial(self) -> bool:
        """True when the run went on without some source (cut by the deadline, or an optional
        source that failed): the items are real but may be fewer or different."""
        return self.error is None and (
            bool(self.cut) or any(s.status in ("skipped", "cut") for s in self.stats)
        )

    def __len__(self) -> int:
        return len(self.items)

    def raise_for_error(self) -> Result:
        """Raise the error, if any; return self otherwise (for chaining)."""
        if self.error is not None:
            raise self.error
        return self

    def summary(self) -> str:
        """``Returning 10 items with mean(score)=0.8``, or the reason there are none."""
        if self.reason is not None:
            return f"Returning 0 items: {self.reason}"
        n = len(self.items)
        col = self.summary_column
        if col and col in self.items and pd.api.types.is_numeric_dtype(self.items[col].dtype):
            mean = float(self.items[col].mean())
            if not math.isnan(mean):
                return f"Returning {n} items with mean({col})={mean:.4g}"
        return f"Returning {n} items"

    def log_lines(self) -> list[str]:
        """The per-operator log for people, one line per operator, then the summary."""
        from flight.hooks import initialized_line

        lines = [s.message for s in self.stats if s.message and s.role != "step"]
        if self.error is None or any(s.role == "step" and s.message for s in self.stats):
            lines.append(initialized_line(self.n_candidates))
        lines.extend(s.message for s in self.stats if s.message and s.role == "step")
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append(self.summary())
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: one list per returned column (in order), plus ``reason``, ``warnings``,
        ``partial``, ``cut`` and ``debug``. numpy and pandas scalars become Python values,
        NaN/NA become None."""
        out: dict[str, Any] = {name: jsonable(self.items[name]) for name in self.items.columns}
        out["reason"] = self.reason
        out["warnings"] = list(self.warnings)
        out["partial"] = self.partial
        out["cut"] = list(self.cut)
        out["debug"] = self.debug
        return out


def jsonable(values: Any) -> list[Any]:
    """A column as a list of JSON-ready Python values."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, copy=False)
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return series.to_numpy().tolist()
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        arr = series.to_numpy()
        return [None if math.isnan(v) else v for v in arr.tolist()]
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        return [None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in series]
    return [_scalar(v) for v in series.tolist()]


def _scalar(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, np.generic):
        return _scalar(value.item())
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, str | int | bool):
        return value
    if isinstance(value, list | tuple):
        return [_scalar(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    return str(value)
