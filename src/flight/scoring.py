"""Scoring steps, as the design notes import them: ``import flight.scoring as sf``.

``sf.WeightedScore``, ``sf.ModelScore`` and ``sf.TransformOperator`` are Flight's; any other
name is the transform operator (a step that sets columns, such as a score) registered under
it, e.g. ``sf.PsaleScore()`` once the module defining it is imported.
"""

from __future__ import annotations

from typing import Any

from flight._kinds import operator_of_kinds
from flight.operators.base import TransformOperator
from flight.operators.columns import WeightedScore
from flight.operators.model import ModelScore

__all__ = ["ModelScore", "TransformOperator", "WeightedScore"]


def __getattr__(name: str) -> Any:
    return operator_of_kinds(__name__, name, ("transform",))
