"""Models as files (``flight.models``) and the ``fo.ModelScore`` step: loaded once per
process, digests checked, fail-open with a warning, and refused when they saw held-out data."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import flight
import flight.operators as fo
from flight.evaluation import split_by_time
from flight.models import ModelError, check_trained_within, load_model, save_model

LOADS: list[Path] = []


def write_weights(where: Path, weights: dict[int, float]) -> None:
    frame = pd.DataFrame({"item": list(weights), "weight": list(weights.values())})
    frame.to_csv(where / "weights.csv", index=False)


def read_weights(path: Path) -> dict[int, float]:
    LOADS.append(path)
    frame = pd.read_csv(path / "weights.csv")
    return dict(zip(frame["item"].tolist(), frame["weight"].tolist(), strict=True))


class WeightScore(fo.ModelScore):
    """Scores items by a weight table; ``delay`` makes scoring slow."""

    delay: float = 0.0

    def load(self, path: Path) -> dict[int, float]:
        return read_weights(path)

    def score(self, model: dict[int, float], df: pd.DataFrame, **ctx: Any) -> Any:
        if self.delay:
            time.sleep(self.delay)
        return np.array([model.get(int(i), 0.0) for i in df["item"]])


def pipeline(step: fo.Operator) -> flight.Pipeline:
    items = pd.DataFrame({"item": [1, 2, 3], "score": [0.3, 0.2, 0.1]})

    class Three(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(items)

    return flight.Pipeline("scored", item_type="item", includes=[Three()]) | [
        step,
        fo.Sort(by="score", desc=True),
    ]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    where = tmp_path / "weights"
    save_model(
        where,
        name="weights",
        write=lambda d: write_weights(d, {1: 0.1, 2: 0.9, 3: 0.5}),
        library="hand-made table",
    )
    return where


async def test_the_model_scores_in_one_step_and_loads_once(model_dir: Path) -> None:
    LOADS.clear()
    scored = pipeline(WeightScore(model=str(model_dir)))
    for _ in range(3):
        result = await scored.execute()
        assert result.items["item"].tolist() == [2, 3, 1]
        assert result.items["score"].tolist() == [0.9, 0.5, 0.1]
        assert result.warnings == ()
    assert [p.name for p in LOADS] == [model_dir.name]  # once per process, not per request
    line = next(s.message for s in result.stats if s.name == "WeightScore")
    assert "set score on 3 items" in line


async def test_a_missing_or_slow_model_fails_open_and_says_so(
    model_dir: Path, tmp_path: Path
) -> None:
    missing = await pipeline(WeightScore(model=str(tmp_path / "nowhere"))).execute()
    assert missing.ok and missing.items["item"].tolist() == [1, 2, 3]  # the previous score
    assert (
        "is unavailable" in missing.warnings[0]
        and "kept the previous 'score'" in (missing.warnings[0])
    )
    slow = await pipeline(WeightScore(model=str(model_dir), delay=1.0, timeout=0.05)).execute()
    assert slow.ok and slow.items["score"].tolist() == [0.3, 0.2, 0.1]
    assert "longer than its 0.05 s timeout" in slow.warnings[0]
    strict = await pipeline(WeightScore(model=str(tmp_path / "nowhere"), fail_open=False)).execute()
    assert not strict.ok and "is unavailable" in str(strict.error)


def test_a_changed_model_file_is_refused(model_dir: Path) -> None:
    (model_dir / "weights.csv").write_text("item,weight\n1,100\n")
    with pytest.raises(ModelError, match="changed since it was saved"):
        load_model(model_dir, read_weights)
    with pytest.raises(ModelError, match="no model at"):
        load_model(model_dir.parent / "none", read_weights)


async def test_a_model_that_saw_held_out_interactions_is_refused_under_eval(
    tmp_path: Path,
) -> None:
    clicks = pd.DataFrame(
        {"user": [1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 3, 2], "ts": [1, 2, 3, 1, 2, 3]}
    )
    flight.register_interactions("clicks", clicks, replace=True)
    split = split_by_time(clicks, user="user", item="item", time="ts", holdout=1)

    def trained_on(frame: pd.DataFrame, where: Path) -> Path:
        save_model(
            where,
            name="weights",
            write=lambda d: write_weights(d, {1: 0.1, 2: 0.9, 3: 0.5}),
            library="hand-made table",
            trained_on=("clicks", frame, "user", "item"),
        )
        return where

    everything = load_model(trained_on(clicks, tmp_path / "all"), read_weights)
    honest = load_model(trained_on(split.train, tmp_path / "train"), read_weights)
    check_trained_within(everything)  # serving: it may use everything
    with flight.data.evaluating({"clicks": split.train}):
        check_trained_within(honest)
        with pytest.raises(ModelError, match="trained on 2 'clicks' interactions"):
            check_trained_within(everything)
        # in a pipeline it is an error, even though the step fails open on outages
        result = await pipeline(WeightScore(model=str(everything.path))).execute()
        assert not result.ok and "held-out" in str(result.error)
    check_trained_within(everything)


def test_model_json_records_version_digest_and_what_it_learnt_from(model_dir: Path) -> None:
    loaded = load_model(model_dir, read_weights)
    assert loaded.version.endswith(loaded.digest[:8]) and len(loaded.digest) == 64
    assert loaded.meta["library"] == "hand-made table"
    assert set(loaded.meta["files"]) == {"weights.csv"}
    assert asyncio.iscoroutinefunction(WeightScore.__call__)
