"""Operators: ``import flight.operators as fo``.

Kinds to subclass: :class:`SourceOperator` (returns :class:`Source`),
:class:`FilterOperator`, :class:`SamplerOperator`, :class:`SortOperator` (return the index of
rows to keep) and :class:`TransformOperator` (returns columns). Built-ins: :class:`Hydrate`,
:class:`WeightedScore`, :class:`Rename`, :class:`Match`, :class:`Threshold`,
:class:`Head`, :class:`Dedupe`, :class:`LimitPerGroup`, :class:`Sort`,
:class:`Shuffle`, :class:`DiverseSample`. ``@fo.register("alias")`` adds a name.
"""

from flight.candidates import Candidates
from flight.operators.base import (
    UNSET,
    FilterOperator,
    IndexOperator,
    Operator,
    SamplerOperator,
    SortOperator,
    Source,
    SourceOperator,
    SourcePolicy,
    TransformOperator,
    warn,
)
from flight.operators.columns import Hydrate, Rename, WeightedScore
from flight.operators.filters import Dedupe, Head, LimitPerGroup, Match, Threshold
from flight.operators.model import ModelScore
from flight.operators.ordering import DiverseSample, Shuffle, Sort
from flight.operators.registry import get_operator, operator_names, register

__all__ = [
    "UNSET",
    "Candidates",
    "Dedupe",
    "DiverseSample",
    "FilterOperator",
    "Head",
    "Hydrate",
    "IndexOperator",
    "LimitPerGroup",
    "Match",
    "ModelScore",
    "Operator",
    "Rename",
    "SamplerOperator",
    "Shuffle",
    "Sort",
    "SortOperator",
    "Source",
    "SourceOperator",
    "SourcePolicy",
    "Threshold",
    "TransformOperator",
    "WeightedScore",
    "get_operator",
    "operator_names",
    "register",
    "warn",
]
