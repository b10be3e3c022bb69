"""Modules that expose registered operators of some kinds by name (``flight.sourcing``,
``flight.scoring``): ``so.AvailableInventory()`` finds the source a team registered."""

from __future__ import annotations

from typing import Any

from flight.errors import UnknownOperatorError
from flight.operators.registry import get_operator


def operator_of_kinds(module: str, name: str, kinds: tuple[str, ...]) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        cls = get_operator(name)
    except UnknownOperatorError as exc:
        raise AttributeError(f"module {module!r} has no attribute {name!r}: {exc}") from None
    if cls.kind not in kinds:
        raise AttributeError(
            f"module {module!r} has no attribute {name!r}: {name} is a {cls.kind} operator "
            f"(use flight.operators.{name}); {module} holds {', '.join(kinds)} operators"
        )
    return cls
