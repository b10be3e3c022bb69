"""Each built-in operator, on plain DataFrames and inside a pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from flight_test_ops import Items

import flight.operators as fo
from flight import AttributeProvider, Engine, Pipeline, TableProvider, register_provider
from flight.errors import ProviderError


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": [10, 11, 12, 13, 14, 15],
            "genre": pd.Categorical(["a", "b", "a", "c", "b", "a"]),
            "score": [0.9, 0.8, 0.7, 0.6, np.nan, 0.4],
            "price": [5.0, 15.0, 25.0, 35.0, 45.0, 55.0],
        }
    )


def kept(op: fo.IndexOperator, df: pd.DataFrame, **ctx: Any) -> list[int]:
    return df.loc[op(df, **ctx), "item"].tolist()  # type: ignore[index]


def test_match_keeps_listed_values(df: pd.DataFrame) -> None:
    assert kept(fo.Match("genre", values=["a", "c"]), df) == [10, 12, 13, 15]
    assert kept(fo.Match("genre", values=["a"], negate=True), df) == [11, 13, 14]
    assert kept(fo.Match("item", values=[11, 15]), df) == [11, 15]


def test_match_against_request_context(df: pd.DataFrame) -> None:
    assert kept(fo.Match("genre", context="genre"), df, genre="b") == [11, 14]
    assert kept(fo.Match("genre", context="genre"), df, genre=["b", "c"]) == [11, 13, 14]


def test_match_needs_values_or_context() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        fo.Match("genre")


def test_threshold_is_inclusive_and_drops_missing(df: pd.DataFrame) -> None:
    assert kept(fo.Threshold("price", min=15, max=45), df) == [11, 12, 13, 14]
    assert kept(fo.Threshold("score", min=0.6), df) == [10, 11, 12, 13]
    with pytest.raises(ValueError, match="min=, max="):
        fo.Threshold("price")


def test_head_keeps_first_n(df: pd.DataFrame) -> None:
    assert kept(fo.Head(2), df) == [10, 11]
    assert kept(fo.Head(100), df) == df["item"].tolist()


def test_dedupe_keeps_first_per_value(df: pd.DataFrame) -> None:
    assert kept(fo.Dedupe("genre"), df) == [10, 11, 13]


def test_limit_per_group_keeps_first_n_of_each(df: pd.DataFrame) -> None:
    assert kept(fo.LimitPerGroup(by="genre", n=2), df) == [10, 11, 12, 13, 14]


def test_sort_numeric_desc_puts_missing_last_and_is_stable(df: pd.DataFrame) -> None:
    assert kept(fo.Sort("score", desc=True), df) == [10, 11, 12, 13, 15, 14]
    assert kept(fo.Sort("score"), df) == [15, 13, 12, 11, 10, 14]
    ties = pd.DataFrame({"item": [1, 2, 3], "s": [1, 0, 1]})
    assert kept(fo.Sort("s", desc=True), ties) == [1, 3, 2]


def test_sort_strings(df: pd.DataFrame) -> None:
    frame = df.assign(name=["delta", "alpha", None, "charlie", "bravo", "echo"])
    assert kept(fo.Sort("name"), frame) == [11, 14, 13, 10, 15, 12]


def test_shuffle_is_repeatable_with_a_seed(df: pd.DataFrame) -> None:
    first = kept(fo.Shuffle(seed=7), df)
    assert first == kept(fo.Shuffle(seed=7), df)
    assert sorted(first) == df["item"].tolist()
    assert any(kept(fo.Shuffle(seed=s), df) != first for s in range(5))


def test_diverse_sample_round_robins_over_groups(df: pd.DataFrame) -> None:
    op = fo.DiverseSample(n=4, maximize="score", by="genre")
    # best of each group first (a:0.9, b:0.8, c:0.6), then the second best (a:0.7)
    assert kept(op, df) == [10, 11, 13, 12]


def test_diverse_sample_caps_groups(df: pd.DataFrame) -> None:
    op = fo.DiverseSample(n=6, maximize="score", by="genre", max_per_group=1)
    assert kept(op, df) == [10, 11, 13]


def test_diverse_sample_is_deterministic_given_a_seed() -> None:
    frame = pd.DataFrame(
        {"item": range(200), "g": [i % 7 for i in range(200)], "s": np.linspace(0, 1, 200)}
    )
    op = fo.DiverseSample(n=20, maximize="s", by="g", temperature=0.5, seed=3)
    picks = kept(op, frame)
    assert picks == kept(op, frame)
    assert len(set(picks)) == 20
    other = fo.DiverseSample(n=20, maximize="s", by="g", temperature=0.5, seed=4)
    assert kept(other, frame) != picks
    groups = pd.Series([i % 7 for i in picks]).value_counts()
    assert groups.max() - groups.min() <= 1  # still spread evenly over the 7 groups


async def test_diverse_sample_without_seed_uses_the_injected_rng() -> None:
    p = Pipeline("d", item_type="item").initialize(
        includes=[Items(list(range(50)), column="s", values=list(np.linspace(0, 1, 50)))]
    ) | fo.DiverseSample(n=5, maximize="s", by="s", temperature=1.0)
    first = await Engine(rng=np.random.default_rng(1), log=False).execute(p)
    again = await Engine(rng=np.random.default_rng(1), log=False).execute(p)
    other = await Engine(rng=np.random.default_rng(2), log=False).execute(p)
    assert first.items["item"].tolist() == again.items["item"].tolist()
    assert first.items["item"].tolist() != other.items["item"].tolist()


def test_weighted_score_combines_columns(df: pd.DataFrame) -> None:
    out = fo.WeightedScore({"score": 2.0, "price": 0.01})(df)
    assert out["score"].tolist() == pytest.approx([1.85, 1.75, 1.65, 1.55, 0.45, 1.35])


def test_weighted_score_normalizes(df: pd.DataFrame) -> None:
    out = fo.WeightedScore({"price": 1.0}, output="p", normalize="minmax")(df)
    assert out["p"].tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    out = fo.WeightedScore({"score": 1.0}, output="r", normalize="rank", fillna=-1)(df)
    assert out["r"].tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4, -1, 0.2])


def test_weighted_score_treats_a_column_no_source_produced_as_missing(df: pd.DataFrame) -> None:
    out = fo.WeightedScore({"score": 1.0, "similarity": 1.0}, fillna=0.5)(df)
    assert out["score"].tolist()[:2] == pytest.approx([1.4, 1.3])
    with pytest.raises(KeyError, match="no column 'similarity'"):
        fo.WeightedScore({"similarity": 1.0}, strict=True)(df)


def test_rename_renames_columns(df: pd.DataFrame) -> None:
    out = fo.Rename({"score": "relevance", "price": "score"})(df)
    assert sorted(out.columns) == ["genre", "item", "relevance", "score"]
    assert out["score"].tolist() == df["price"].tolist()
    assert out["relevance"].tolist()[:2] == [0.9, 0.8]


async def test_hydrate_adds_columns_from_the_registered_provider() -> None:
    attrs = pd.DataFrame({"item": [1, 2, 3], "title": ["A", "B", "C"], "year": [2001, 2002, 2003]})
    register_provider(TableProvider(attrs, key="item"))
    p = Pipeline("h", item_type="item").initialize(includes=[Items([3, 1, 99])])
    result = await (p | fo.Hydrate(["title", "year"])).execute()
    assert result.to_dict()["title"] == ["C", "A", None]
    assert result.to_dict()["year"] == [2003, 2001, None]


async def test_hydrate_from_a_named_async_provider() -> None:
    class FeatureStore(AttributeProvider):
        item_type = "item"

        @property
        def columns(self) -> list[str]:
            return ["embedding_norm"]

        async def lookup(self, ids: Any, columns: Any) -> pd.DataFrame:
            return pd.DataFrame({"embedding_norm": [float(i) / 10 for i in ids]})

    register_provider("features", FeatureStore())
    p = Pipeline("h", item_type="item").initialize(includes=[Items([5, 7])])
    result = await (p | fo.Hydrate("embedding_norm", provider="features")).execute()
    assert result.items["embedding_norm"].tolist() == [0.5, 0.7]


async def test_hydrate_unknown_column_or_provider_is_reported() -> None:
    p = Pipeline("h", item_type="item").initialize(includes=[Items([1])])
    result = await (p | fo.Hydrate(["title"], provider="nowhere")).execute()
    assert isinstance(result.error, Exception)
    assert "no attribute provider registered as 'nowhere'" in (result.reason or "")
    register_provider(TableProvider(pd.DataFrame({"item": [1], "a": [1]}), key="item"))
    result = await (p | fo.Hydrate(["title"])).execute()
    assert result.reason == (
        "Hydrate(columns=['title'], provider=None) failed: "
        "provider 'item' has no column 'title'; it has: a"
    )
    assert result.error is not None and isinstance(result.error.__cause__, ProviderError)


async def test_builtins_work_the_same_in_a_pipeline(df: pd.DataFrame) -> None:
    class Frame(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(df)

    steps = [
        fo.Threshold("price", max=50),
        fo.WeightedScore({"score": 1.0}, output="w"),
        fo.DiverseSample(n=3, maximize="w", by="genre"),
        fo.Sort("price", desc=True),
    ]
    result = await (
        Pipeline("b", item_type="item").initialize(includes=[Frame()]) | steps
    ).execute()
    expected = df
    for op in steps:
        if isinstance(op, fo.TransformOperator):
            expected = op(expected)
        else:
            expected = expected.loc[op(expected)]  # type: ignore[index]
    assert result.items["item"].tolist() == expected["item"].tolist() == [13, 11, 10]
