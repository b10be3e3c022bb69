"""Operator classes: dataclass fields, validation, repr, equality, context, policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest

import flight.operators as fo
from flight.errors import OperatorArgumentError, OperatorDefinitionError


class Scored(fo.FilterOperator):
    column: str
    cutoff: float = 0.5
    tags: Sequence[str] = ()

    def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
        return df[df[self.column] >= self.cutoff].index


def test_fields_are_dataclass_style_positional_and_keyword() -> None:
    op = Scored("score", cutoff=0.7, tags=["a", "b"])
    assert (op.column, op.cutoff, op.tags) == ("score", 0.7, ("a", "b"))
    assert op.args() == {"column": "score", "cutoff": 0.7, "tags": ["a", "b"]}


def test_operators_are_frozen_values() -> None:
    op = Scored("score")
    with pytest.raises(AttributeError):
        op.cutoff = 1.0  # type: ignore[misc]
    assert Scored("score") == Scored("score", 0.5)
    assert hash(Scored("score", tags=["x"])) == hash(Scored("score", tags=("x",)))
    assert Scored("score") != Scored("score", 0.6)


def test_repr_is_the_class_with_its_arguments() -> None:
    assert repr(Scored("s", tags=["x"])) == "Scored(column='s', cutoff=0.5, tags=['x'])"


def test_wrong_argument_type_names_operator_and_field() -> None:
    with pytest.raises(
        OperatorArgumentError, match=r"Scored: cutoff: Input should be a valid number"
    ):
        Scored("score", cutoff="high")  # type: ignore[arg-type]


def test_missing_argument_names_operator() -> None:
    with pytest.raises(OperatorArgumentError, match=r"Scored: .*missing 1 required.*'column'"):
        Scored()  # type: ignore[call-arg]


def test_a_single_string_is_accepted_for_a_list_field() -> None:
    assert Scored("s", tags="only").tags == ("only",)  # type: ignore[arg-type]
    assert fo.Hydrate("title").columns == ("title",)  # type: ignore[arg-type]


def test_non_primitive_field_is_rejected_at_class_definition() -> None:
    with pytest.raises(OperatorDefinitionError, match=r"Bad.model: field type .* is not allowed"):

        class Bad(fo.FilterOperator):
            model: pd.DataFrame

            def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
                return df.index


def test_concrete_operator_must_define_call() -> None:
    with pytest.raises(OperatorDefinitionError, match="must define __call__"):

        class NoCall(fo.FilterOperator):
            x: int = 1


def test_abstract_base_is_not_registered_and_needs_no_call() -> None:
    class MyBase(fo.FilterOperator, abstract=True):
        threshold: float = 0.0

    with pytest.raises(KeyError):
        fo.get_operator("MyBase")


def test_context_parameters_are_inspected() -> None:
    class NeedsUser(fo.SourceOperator):
        async def __call__(self, user_id: int, region: str = "eu") -> fo.Source:
            return fo.Source([user_id])

    op = NeedsUser()
    assert op.required_context() == frozenset({"user_id"})
    assert fo.Match("genre", context="genre").required_context() == frozenset({"genre"})


def test_with_policy_overrides_class_policy_per_instance() -> None:
    class Remote(fo.SourceOperator):
        timeout = 0.5
        retries = 3

        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source([])

    base = Remote()
    tuned = base.with_policy(optional=True, timeout=None)
    assert base.class_policy() == {"timeout": 0.5, "retries": 3}
    assert tuned.policy_overrides() == {"optional": True, "timeout": None}
    assert base != tuned and base.policy_overrides() == {}
    with pytest.raises(OperatorArgumentError, match="retries"):
        base.with_policy(retries=-1)


def test_contract_is_worked_out_once_per_class() -> None:
    from flight.operators.base import OperatorContract, contract_of

    class ForUser(fo.SourceOperator):
        n: int = 1

        async def __call__(self, user_id: int, cohort: str = "a") -> fo.Source:
            return fo.Source([user_id])

    contract = contract_of(ForUser)
    assert isinstance(contract, OperatorContract)
    assert contract is contract_of(ForUser())
    assert contract.field_names == ("n",) and contract.is_async and not contract.abstract
    assert not contract.takes_df and not contract.context_any
    assert contract.context_names == {"user_id", "cohort"}
    assert contract.context_required == {"user_id"}
    scored = contract_of(Scored)
    assert scored.takes_df and scored.fast_path == "select" and not scored.fast
    assert scored.context_any and scored.field_names == ("column", "cutoff", "tags")
    assert contract_of(fo.Head).fast and contract_of(fo.FilterOperator).abstract
