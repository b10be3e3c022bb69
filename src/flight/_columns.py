"""Which columns each step reads and writes, and the check of a pipeline's steps against
its declared ``schema`` (the columns its sources provide).

``flight validate`` and hot reload run :func:`column_problems` on a config that declares a
``schema``: ``Sort: {by: scroe}`` is then an error before anything serves, with a
did-you-mean, instead of a 500 on every request. Built-in operators say what they read and
write; a user's transform may add any column, so the check stops at the first one (it
cannot know what comes after it), and a user's filter or sort is assumed to read what it
needs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from flight.errors import FlightError
from flight.operators.base import Operator
from flight.operators.model import ModelScore
from flight.providers import get_provider

__all__ = ["column_problems", "columns_read", "columns_written"]

_BUILTIN = "flight.operators"


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def columns_read(op: Operator) -> list[str] | None:
    """Columns ``op`` reads; None when it cannot be told (a user's operator)."""
    if not type(op).__module__.startswith(_BUILTIN):
        return None
    name = type(op).__name__
    args = op.args()
    if name in ("Sort", "LimitPerGroup"):
        return _names(args.get("by"))
    if name in ("Threshold", "Match", "Dedupe"):
        return _names(args.get("column"))
    if name == "DiverseSample":
        return _names(args.get("maximize")) + _names(args.get("by"))
    if name == "WeightedScore":
        return list(args.get("weights") or {})
    if name == "Rename":
        return list(args.get("columns") or {})
    return []


def columns_written(op: Operator) -> list[str] | None:
    """Columns ``op`` adds; None when it cannot be told (a user's transform)."""
    name = type(op).__name__
    args = op.args()
    if op.kind != "transform":
        return []
    if not type(op).__module__.startswith(_BUILTIN) and not isinstance(op, ModelScore):
        return None  # a user's transform (a ModelScore subclass says what it writes)
    if name == "Hydrate":
        return _names(args.get("columns"))
    if name == "Rename":
        return list((args.get("columns") or {}).values())
    return _names(args.get("output"))


def column_problems(
    item_type: str,
    schema: Mapping[str, str],
    steps: Iterable[Operator],
    return_cols: Iterable[str] | None,
) -> list[str]:
    """Each step reading a column that neither the schema nor an earlier step provides."""
    known = {item_type, *schema}
    problems: list[str] = []
    for i, op in enumerate(steps):
        if type(op).__name__ == "Hydrate":
            problems.extend(_hydrate_problems(i, op, item_type))
        reads = columns_read(op)
        for column in reads or []:
            if column not in known:
                problems.append(_missing(f"steps[{i}] ({op!r})", column, known))
        written = columns_written(op)
        if written is None:
            return problems  # a user's transform: what comes after it cannot be told
        known.update(written)
        if type(op).__name__ == "Rename":
            known.difference_update(columns_read(op) or [])
    for column in return_cols or []:
        if column not in known:
            problems.append(_missing("return_cols", column, known))
    return problems


def _missing(where: str, column: str, known: set[str]) -> str:
    close = difflib.get_close_matches(column, sorted(known), 1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"{where}: column {column!r} is neither in the schema nor set by an earlier step "
        f"(known here: {', '.join(sorted(known))}){hint}"
    )


def _hydrate_problems(i: int, op: Operator, item_type: str) -> list[str]:
    args = op.args()
    name = args.get("provider") or item_type
    try:
        provider = get_provider(str(name))
    except FlightError:
        return []  # registered later (at start-up): checked when it runs
    have = set(provider.columns)
    return [
        _missing(f"steps[{i}] ({op!r})", c, have).replace(
            "is neither in the schema nor set by an earlier step",
            f"is not a column of provider {name!r}",
        )
        for c in _names(args.get("columns"))
        if c not in have
    ]
