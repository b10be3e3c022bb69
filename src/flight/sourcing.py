"""Sources, as the design notes import them: ``import flight.sourcing as so``.

``so.SourceOperator``, ``so.Source`` and ``so.SourcePolicy`` are Flight's; any other name is
the source operator registered under it (defined in an imported module or a plug-in), so
``so.AvailableInventory()`` works once the team's module defining it is imported.
"""

from __future__ import annotations

from typing import Any

from flight._kinds import operator_of_kinds
from flight.operators.base import Source, SourceOperator, SourcePolicy

__all__ = ["Source", "SourceOperator", "SourcePolicy"]


def __getattr__(name: str) -> Any:
    return operator_of_kinds(__name__, name, ("source",))
