"""Result.to_dict is JSON-ready."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from flight.result import Result, jsonable


def test_to_dict_has_one_list_per_column_and_plain_python_values() -> None:
    items = pd.DataFrame(
        {
            "item": np.array([1, 2], dtype=np.int64),
            "score": np.array([0.5, np.nan]),
            "genre": pd.Categorical(["a", "b"]),
            "year": pd.array([1999, None], dtype="Int64"),
            "ok": np.array([True, False]),
            "title": pd.array(["A", None], dtype="str"),
        }
    )
    result = Result("p", "item", items, None, (), 2, debug=[{"name": "X"}])
    out = result.to_dict()
    assert out == {
        "item": [1, 2],
        "score": [0.5, None],
        "genre": ["a", "b"],
        "year": [1999, None],
        "ok": [True, False],
        "title": ["A", None],
        "reason": None,
        "warnings": [],
        "partial": False,
        "cut": [],
        "debug": [{"name": "X"}],
    }
    assert all(type(v) is int for v in out["item"])
    json.dumps(out, allow_nan=False)


def test_summary_uses_the_score_column() -> None:
    items = pd.DataFrame({"item": [1, 2], "score": [0.6, 1.0]})
    assert Result("p", "item", items, None, (), 2, summary_column="score").summary() == (
        "Returning 2 items with mean(score)=0.8"
    )
    empty = Result("p", "item", items.iloc[:0], "nothing left", (), 2)
    assert empty.summary() == "Returning 0 items: nothing left"


def test_jsonable_dates_become_iso_strings() -> None:
    assert jsonable(pd.Series(pd.to_datetime(["2024-01-02"]))) == ["2024-01-02T00:00:00"]
