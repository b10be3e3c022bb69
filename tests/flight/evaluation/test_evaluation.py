"""Offline evaluation: the split, the metrics against hand-computed cases, the bootstrap, the
no-leakage seam, the batch path, and ``flight eval`` end to end (its report in Chromium)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import eval_ops
import numpy as np
import pandas as pd
import pytest
import yaml
from playwright.sync_api import Browser, expect

import flight
from flight.evaluation import (
    EvalInputError,
    evaluate,
    execute_many,
    list_metrics,
    split_by_time,
)
from flight.evaluation.metrics import bootstrap_mean, bootstrap_paired, coverage


def clicks_frame(users: int = 30, items: int = 40, seed: int = 7) -> pd.DataFrame:
    """Each user clicks 8 to 14 distinct items; popular items (low ids) more often."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1)
    rows = []
    for user in range(1, users + 1):
        n = int(rng.integers(8, 15))
        chosen = rng.choice(
            np.arange(1, items + 1), size=n, replace=False, p=weights / weights.sum()
        )
        for t, item in enumerate(chosen):
            rows.append((user, int(item), 1000 * user + t, float(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user", "item", "ts", "stars"])


def pipeline_config(name: str, n: int) -> dict[str, object]:
    return {
        "name": name,
        "item_type": "item",
        "imports": [str(eval_ops.__file__)],
        "context": {"user_id": "int"},
        "includes": [{"EvalPopular": {"n": n}}],
        "excludes": [{"EvalClicked": {}}],
        "steps": [{"Sort": {"by": "popularity", "desc": True}}, {"Head": {"n": 10}}],
        "return_cols": ["item", "popularity"],
    }


@pytest.fixture
def clicks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clicks.csv"
    clicks_frame().to_csv(path, index=False)
    monkeypatch.setenv("EVAL_CLICKS", str(path))
    return path


@pytest.fixture
def configs(tmp_path: Path, clicks: Path) -> list[Path]:
    paths = []
    for name, n in (("wide", 25), ("narrow", 3)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(pipeline_config(name, n)))
        paths.append(path)
    return paths


@pytest.fixture
def recorded() -> Iterator[None]:
    eval_ops.VISIBLE.clear()
    eval_ops.BUILDS.clear()
    yield


# -- the split --------------------------------------------------------------------------------


def test_split_holds_out_each_users_last_interactions_by_time() -> None:
    frame = pd.DataFrame(
        {
            "u": [1, 1, 1, 1, 2, 2, 3, 3, 3, 3],
            "i": [10, 11, 12, 13, 10, 11, 20, 21, 22, 23],
            "t": [4, 1, 3, 2, 1, 2, 5, 5, 5, 1],  # user 3: three ties at 5, file order wins
            "r": [5, 1, 4, 2, 3, 3, 1, 5, 4, 2],
        }
    )
    split = split_by_time(frame, user="u", item="i", time="t", holdout=2, min_train=2)
    assert split.users == [1, 3]  # user 2 has 2 < holdout + min_train interactions
    assert split.relevant == {1: frozenset({10, 12}), 3: frozenset({21, 22})}
    assert set(map(tuple, split.train[["u", "i"]].to_numpy().tolist())) == {
        (1, 11),
        (1, 13),
        (2, 10),
        (2, 11),
        (3, 20),
        (3, 23),
    }
    assert len(split.train) + len(split.test) == len(frame)
    assert split.skipped_short == 1 and "2 users evaluated" in split.rule()

    rated = split_by_time(
        frame, user="u", item="i", time="t", holdout=2, min_train=2, rating="r", min_rating=4
    )
    assert rated.relevant == {1: frozenset({10, 12}), 3: frozenset({21, 22})}
    strict = split_by_time(
        frame, user="u", item="i", time="t", holdout=2, min_train=2, rating="r", min_rating=5
    )
    assert strict.users == [1, 3] and strict.relevant[1] == frozenset({10})


def test_split_refuses_what_it_cannot_use() -> None:
    frame = pd.DataFrame({"u": [1, 1], "i": [1, 2], "t": [1, 2]})
    with pytest.raises(EvalInputError, match=r"no column 'when'.*--user/--item/--time"):
        split_by_time(frame, user="u", item="i", time="when", holdout=1)
    with pytest.raises(EvalInputError, match=r"no user can be evaluated.*lower --holdout"):
        split_by_time(frame, user="u", item="i", time="t", holdout=2)
    with pytest.raises(EvalInputError, match="--min-rating needs --rating"):
        split_by_time(frame, user="u", item="i", time="t", holdout=1, min_rating=3)


# -- metrics against hand-computed cases ------------------------------------------------------


def test_list_metrics_match_hand_computed_values() -> None:
    # hits at ranks 1 and 3 of 4; 3 relevant items
    m = list_metrics([7, 8, 9, 10], frozenset({7, 9, 99}), k=4)
    assert m.precision == pytest.approx(2 / 4)
    assert m.recall == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg == pytest.approx(dcg / idcg)
    assert m.map == pytest.approx((1 / 1 + 2 / 3) / 3)
    # k shorter than the list, and an empty list
    assert list_metrics([1, 2, 3], frozenset({3}), k=2).recall == 0.0
    empty = list_metrics([], frozenset({3}), k=5)
    assert empty.empty and empty.ndcg == 0.0 and empty.novelty is None
    # diversity: 4 items, genres a a b c -> 1 same pair of 6
    div = list_metrics([1, 2, 3, 4], frozenset(), k=4, attribute=["a", "a", "b", "c"])
    assert div.diversity == pytest.approx(5 / 6)
    # novelty and popularity from training counts over 8 users
    nov = list_metrics([1, 2], frozenset(), k=2, counts={1: 8, 2: 2}, n_users=8)
    assert nov.popularity == 5.0
    assert nov.novelty == pytest.approx((0 + 2) / 2)
    assert coverage([[1, 2], [2, 3]], catalogue_size=10) == pytest.approx(0.3)


def test_bootstrap_is_deterministic_with_a_seed_and_pairs_users() -> None:
    values = np.linspace(0, 1, 50)
    a = bootstrap_mean(values, seed=3)
    assert a == bootstrap_mean(values, seed=3)
    assert a.value == pytest.approx(0.5) and a.low < a.value < a.high
    assert bootstrap_mean(values, seed=4) != a
    # paired: a constant per-user improvement is real however noisy the users are
    noisy = np.random.default_rng(1).random(200)
    better = bootstrap_paired(noisy + 0.01, noisy, seed=0)
    assert better.excludes_zero() and better.value == pytest.approx(0.01)
    same = bootstrap_paired(noisy, noisy[::-1], seed=0)
    assert not same.excludes_zero()


# -- the seam: no leakage ---------------------------------------------------------------------


async def test_operators_reading_interactions_never_see_a_held_out_one(
    configs: list[Path], clicks: Path, recorded: None
) -> None:
    frame = pd.read_csv(clicks)
    split = split_by_time(frame, user="user", item="item", time="ts", holdout=3, min_train=3)
    held = set(map(tuple, split.test[["user", "item"]].to_numpy().tolist()))
    pipelines = [(p.stem, flight.Pipeline.from_config(p)) for p in configs]

    # serving: the same operator sees everything, held-out pairs included (the check can fail)
    await pipelines[0][1].execute(user_id=1)
    assert held <= eval_ops.VISIBLE
    eval_ops.VISIBLE.clear()

    evaluation = await evaluate(pipelines, split, dataset="clicks", user_key="user_id", k=5)
    assert eval_ops.VISIBLE and not (eval_ops.VISIBLE & held)
    assert len(split.train) in eval_ops.BUILDS  # popularity rebuilt from the training split
    # held-out items are not excluded as "already clicked": some are recommended and hit
    assert evaluation.metrics["wide"]["recall@5"].value > 0
    # after the evaluation, serving sees everything again
    eval_ops.VISIBLE.clear()
    await pipelines[0][1].execute(user_id=1)
    assert held <= eval_ops.VISIBLE


async def test_an_unknown_data_set_is_refused_before_anything_runs(configs: list[Path]) -> None:
    frame = pd.read_csv(os.environ["EVAL_CLICKS"])
    split = split_by_time(frame, user="user", item="item", time="ts", holdout=3)
    pipeline = flight.Pipeline.from_config(configs[0])
    with pytest.raises(flight.data.DataError, match=r"no such data set.*registered: .*clicks"):
        await evaluate([("wide", pipeline)], split, dataset="purchases", user_key="user_id", k=5)


async def test_batch_path_gives_the_lists_of_one_by_one_execution(configs: list[Path]) -> None:
    pipeline = flight.Pipeline.from_config(configs[0])
    contexts = [{"user_id": u} for u in range(1, 31)]
    batch = await execute_many(pipeline, contexts)
    one_by_one = [await pipeline.execute(**ctx) for ctx in contexts]
    assert [r.items["item"].tolist() for r in batch] == [
        r.items["item"].tolist() for r in one_by_one
    ]
    assert len({tuple(r.items["item"]) for r in batch}) > 1  # lists differ per user


async def test_evaluation_ranks_the_better_pipeline_first_with_real_intervals(
    configs: list[Path], clicks: Path
) -> None:
    frame = pd.read_csv(clicks)
    split = split_by_time(frame, user="user", item="item", time="ts", holdout=3, min_train=3)
    pipelines = [(p.stem, flight.Pipeline.from_config(p)) for p in configs]
    evaluation = await evaluate(pipelines, split, dataset="clicks", user_key="user_id", k=10)
    wide, narrow = evaluation.metrics["wide"], evaluation.metrics["narrow"]
    assert wide["recall@10"].value > narrow["recall@10"].value
    assert evaluation.compared["narrow"]["recall@10"].high < 0  # really worse
    assert narrow["coverage"] < wide["coverage"]
    assert wide["users"] == len(split.users) == 30
    again = await evaluate(pipelines, split, dataset="clicks", user_key="user_id", k=10)
    assert again.to_json()["wide"]["intervals"] == evaluation.to_json()["wide"]["intervals"]


# -- the command ------------------------------------------------------------------------------


def flight_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from flight.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


@pytest.mark.browser
def test_flight_eval_writes_every_output_and_a_report_people_can_read(
    configs: list[Path], clicks: Path, tmp_path: Path, browser: Browser
) -> None:
    out = tmp_path / "out"
    done = flight_cli(
        "eval",
        *map(str, configs),
        "--interactions",
        str(clicks),
        "--user",
        "user",
        "--item",
        "item",
        "--time",
        "ts",
        "--holdout",
        "3",
        "--min-train",
        "3",
        "--k",
        "5",
        "--out",
        str(out),
        env={"EVAL_CLICKS": str(clicks)},
    )
    assert done.returncode == 0, done.stderr
    assert "30 users evaluated" in done.stderr
    assert "wide" in done.stdout and "narrow" in done.stdout and "ndcg@5" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"ndcg@5", "recall@5", "precision@5", "map@5", "coverage", "users"} <= set(
        metrics["wide"]
    )
    assert metrics["wide"]["users"] == 30
    assert metrics["narrow"]["vs_wide"]["recall@5"]["real"] is True
    recs = [json.loads(line) for line in (out / "recs.jsonl").read_text().splitlines()]
    assert len(recs) == 60 and {r["pipeline"] for r in recs} == {"wide", "narrow"}
    assert all(len(r["items"]) <= 5 for r in recs)
    held = pd.read_csv(out / "heldout.csv")
    assert list(held.columns) == ["user", "item"] and len(held) == 90

    page = browser.new_page()
    page.goto((out / "report.html").as_uri())
    expect(page.locator("#metrics tr")).to_have_count(3)
    expect(page.locator("#metrics")).to_contain_text("recall@5")
    expect(page.get_by_role("heading", name="Against wide (paired, per user)")).to_be_visible()
    assert page.locator("section svg").count() == 3  # accuracy, recall by k, popularity
    page.close()


def test_flight_eval_bad_input_exits_2_saying_what_to_do(configs: list[Path], clicks: Path) -> None:
    wrong = flight_cli(
        "eval",
        str(configs[0]),
        "--interactions",
        str(clicks),
        "--user",
        "customer",
        "--item",
        "item",
        "--time",
        "ts",
        env={"EVAL_CLICKS": str(clicks)},
    )
    assert wrong.returncode == 2
    assert "no column 'customer'" in wrong.stderr and "--user/--item/--time" in wrong.stderr
    missing = flight_cli("eval", str(configs[0]), "--interactions", "nope.csv", env={})
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = flight_cli(
        "eval",
        str(configs[0]),
        "--interactions",
        str(clicks),
        "--user",
        "user",
        "--item",
        "item",
        "--time",
        "ts",
        "--dataset",
        "ratings",
        env={"EVAL_CLICKS": str(clicks)},
    )
    assert unknown.returncode == 2 and "no such data set" in unknown.stderr


def test_interactions_registry_says_what_is_wrong() -> None:
    with pytest.raises(flight.data.DataError, match="no interaction data set 'nope'"):
        flight.interactions("nope")
    flight.register_interactions("tiny", pd.DataFrame({"user": [1], "item": [2]}))
    with pytest.raises(flight.data.DataError, match=r"already registered.*replace=True"):
        flight.register_interactions("tiny", pd.DataFrame())
    assert flight.derived("tiny", len) == 1
