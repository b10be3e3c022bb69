"""The design notes' own code runs as written (the Flight seed: pipeline layer, operator
layer, logs), or says at once what to change."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest

import flight.operators as fo
from flight.errors import OperatorDefinitionError


class AvailableInventory(fo.SourceOperator):
    async def __call__(self, **kwargs: Any) -> fo.Source:
        return fo.Source(
            pd.DataFrame(
                {
                    "sku_id": [1, 2, 3, 4, 5, 6],
                    "department": ["a", "a", "b", "b", "a", "c"],
                    "psale_score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                }
            )
        )


class MatchClientSize(fo.SourceOperator):
    async def __call__(self, client_id: int, **kwargs: Any) -> fo.Source:
        return fo.Source([2, 3, 4, 5, 6])


async def test_the_pipeline_layer_sample_runs_with_the_designs_imports(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import flight.operators as fo
    import flight.scoring as sf
    import flight.sourcing as so
    from flight.pipelines import Pipeline

    assert so.AvailableInventory is AvailableInventory  # the registered source, by name
    assert sf.WeightedScore is fo.WeightedScore
    with pytest.raises(AttributeError, match="Sort is a sort operator"):
        _ = so.Sort
    pipeline = Pipeline("complimentary_items", item_type="sku_id").initialize(
        includes=[so.AvailableInventory(), so.MatchClientSize()]
    )
    pipeline = (
        pipeline
        | fo.DiverseSample(n=3, maximize="psale_score")  # no `by`: the best n
        | fo.Sort("psale_score", desc=True)
    )
    with caplog.at_level(logging.INFO, logger="flight.engine"):
        result = await pipeline.execute(client_id=7, return_cols=["sku_id", "psale_score"])
    assert result.items["sku_id"].tolist() == [1, 2, 3]
    assert "After initialization, 6 items remain" in caplog.messages
    assert "After initialization, 6 items remain" in result.log_lines()


def test_an_operator_that_keeps_request_state_on_self_is_refused_when_defined() -> None:
    with pytest.raises(OperatorDefinitionError, match=r"sets self.department.*local variable"):

        class MatchDepartment(fo.FilterOperator):
            product_id: int

            def __call__(self, df: pd.DataFrame, **kwargs: Any) -> pd.Index:
                department = "a"
                self.department = department
                return df[df.department == department].index
