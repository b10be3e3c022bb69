"""Running pipelines over the evaluated users and turning their lists into figures."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from flight.data import evaluating
from flight.evaluation.metrics import (
    Interval,
    bootstrap_mean,
    bootstrap_paired,
    coverage,
    flat_figures,
    json_number,
    list_metrics,
)
from flight.evaluation.split import EvalInputError, Split
from flight.pipeline import Pipeline
from flight.providers import get_provider
from flight.result import Result

__all__ = ["Evaluation", "PipelineRun", "evaluate", "execute_many"]

Progress = Callable[[str, int], None]  # (pipeline name, users done so far)


async def execute_many(
    pipeline: Pipeline,
    contexts: Sequence[Mapping[str, Any]],
    *,
    return_cols: Sequence[str] | None = None,
    on_result: Callable[[int, Result], None] | None = None,
) -> list[Result]:
    """Run ``pipeline`` once per context, in order, on the default engine.

    The work shared across users (data sets, indexes and models built through
    :func:`flight.derived`, attribute tables) is built once, by the first run, and reused by
    every later one; runs go one after another so that each one's latency is its own."""
    results: list[Result] = []
    for i, ctx in enumerate(contexts):
        result = await pipeline.execute(return_cols=return_cols, **ctx)
        results.append(result)
        if on_result is not None:
            on_result(i, result)
    return results


@dataclasses.dataclass
class PipelineRun:
    """What one pipeline returned for every evaluated user."""

    name: str
    source: str  # the config file (or the name when given as an object)
    lists: dict[Any, list[Any]]
    latency_ms: list[float]
    empty_reasons: Counter[str]
    errors: Counter[str]
    attributes: dict[Any, list[Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Evaluation:
    """Everything ``flight eval`` reports."""

    split: Split
    k: int
    runs: list[PipelineRun]
    metrics: dict[str, dict[str, Any]]  # pipeline -> metric key -> Interval or number
    per_user: dict[str, dict[str, np.ndarray[Any, Any]]]  # pipeline -> metric -> by user
    compared: dict[str, dict[str, Interval]]  # pipeline -> metric key -> diff vs the first
    recall_by_k: dict[str, list[float]]  # pipeline -> recall@1..k
    popularity: dict[str, np.ndarray[Any, Any]]  # pipeline -> training counts of its items
    catalogue_size: int
    seconds: float
    settings: dict[str, Any]

    @property
    def baseline(self) -> str:
        return self.runs[0].name

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``: pipeline name -> flat figures (``ndcg@10`` ..., ``users``), each
        interval as ``{"value", "low", "high"}`` under ``intervals``, and the comparisons."""
        out: dict[str, Any] = {}
        for name, figures in self.metrics.items():
            flat = flat_figures(figures)
            if name in self.compared:
                flat[f"vs_{self.baseline}"] = {
                    key: {
                        **{k: json_number(v) for k, v in iv.to_dict().items()},
                        "real": iv.excludes_zero(),
                    }
                    for key, iv in self.compared[name].items()
                }
            out[name] = flat
        return out


async def evaluate(
    pipelines: Sequence[tuple[str, Pipeline]],
    split: Split,
    *,
    dataset: str,
    user_key: str,
    k: int,
    context: Mapping[str, Any] | None = None,
    diversity_by: str | None = None,
    catalogue_size: int | None = None,
    rounds: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> Evaluation:
    """Run every pipeline for every user of ``split`` while ``dataset`` is the training
    split, then compute the figures (see :mod:`flight.evaluation.metrics`)."""
    if k < 1:
        raise EvalInputError(f"--k must be at least 1, got {k}")
    if not pipelines:
        raise EvalInputError("give at least one pipeline to evaluate")
    names = [name for name, _ in pipelines]
    if len(set(names)) != len(names):
        raise EvalInputError(f"two pipelines have the same name: {', '.join(names)}")
    extra = dict(context or {})
    for name, pipeline in pipelines:
        needed = pipeline.required_context() - {user_key, *extra}
        if needed:
            raise EvalInputError(
                f"pipeline {name!r} needs context {', '.join(sorted(needed))} besides "
                f"{user_key!r}; pass them with --context KEY=VALUE"
            )
    started = time.perf_counter()
    train = split.train
    counts = train.groupby(split.item)[split.user].nunique()
    count_of = counts.to_dict()
    n_users = int(train[split.user].nunique())
    catalogue = catalogue_size or int(
        pd.concat([split.train[split.item], split.test[split.item]]).nunique()
    )
    runs: list[PipelineRun] = []
    with evaluating({dataset: train}):
        for name, pipeline in pipelines:
            run = PipelineRun(name, name, {}, [], Counter(), Counter())
            contexts = [{**extra, user_key: _plain(u)} for u in split.users]

            def record(i: int, result: Result, run: PipelineRun = run) -> None:
                user = split.users[i]
                items = result.items[pipeline_item(result)].tolist() if len(result.items) else []
                run.lists[user] = items[:k]
                run.latency_ms.append(result.elapsed_ms)
                if result.error is not None:
                    run.errors[type(result.error).__name__ + ": " + str(result.error)[:600]] += 1
                elif not items:
                    run.empty_reasons[result.reason or "no items"] += 1
                if progress is not None:
                    progress(run.name, i + 1)

            await execute_many(
                pipeline, contexts, return_cols=[pipeline.item_type], on_result=record
            )
            if diversity_by is not None:
                run.attributes = _attributes(pipeline.item_type, run.lists, diversity_by)
            runs.append(run)
    return _figures(
        runs,
        split,
        k=k,
        count_of=count_of,
        n_users=n_users,
        catalogue=catalogue,
        rounds=rounds,
        seed=seed,
        seconds=time.perf_counter() - started,
        settings={"dataset": dataset, "user_key": user_key, "diversity_by": diversity_by},
    )


def pipeline_item(result: Result) -> str:
    return result.item_type if result.item_type in result.items else str(result.items.columns[0])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _attributes(
    item_type: str, lists: Mapping[Any, list[Any]], column: str
) -> dict[Any, list[Any]]:
    provider = get_provider(item_type)
    if column not in provider.columns:
        raise EvalInputError(
            f"--diversity-by {column!r}: the {item_type!r} attribute provider has no such "
            f"column; it has {', '.join(provider.columns)}"
        )
    every = sorted({i for items in lists.values() for i in items}, key=repr)
    if not every:
        return {u: [] for u in lists}
    found = provider.lookup(np.asarray(every), [column])
    if not isinstance(found, Mapping | pd.DataFrame):
        raise EvalInputError("--diversity-by needs a provider whose lookup is not async")
    values = dict(zip(every, list(found[column]), strict=True))
    return {u: [values[i] for i in items] for u, items in lists.items()}


def _figures(
    runs: list[PipelineRun],
    split: Split,
    *,
    k: int,
    count_of: Mapping[Any, int],
    n_users: int,
    catalogue: int,
    rounds: int,
    seed: int,
    seconds: float,
    settings: dict[str, Any],
) -> Evaluation:
    metrics: dict[str, dict[str, Any]] = {}
    per_user: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    recall_by_k: dict[str, list[float]] = {}
    popularity: dict[str, np.ndarray[Any, Any]] = {}
    for run in runs:
        rows = [
            list_metrics(
                run.lists.get(u, []),
                split.relevant[u],
                k,
                attribute=run.attributes.get(u) if run.attributes else None,
                counts=count_of,
                n_users=n_users,
            )
            for u in split.users
        ]
        columns = {
            "ndcg": np.array([r.ndcg for r in rows]),
            "recall": np.array([r.recall for r in rows]),
            "precision": np.array([r.precision for r in rows]),
            "map": np.array([r.map for r in rows]),
            "novelty": np.array([np.nan if r.novelty is None else r.novelty for r in rows]),
            "popularity": np.array(
                [np.nan if r.popularity is None else r.popularity for r in rows]
            ),
            "empty": np.array([float(r.empty) for r in rows]),
        }
        if run.attributes:
            columns["diversity"] = np.array(
                [np.nan if r.diversity is None else r.diversity for r in rows]
            )
        per_user[run.name] = columns
        figures: dict[str, Any] = {}
        for metric in ("ndcg", "recall", "precision", "map"):
            figures[f"{metric}@{k}"] = bootstrap_mean(columns[metric], rounds=rounds, seed=seed)
        figures["coverage"] = round(
            coverage([run.lists.get(u, []) for u in split.users], catalogue), 6
        )
        if "diversity" in columns:
            figures["diversity"] = bootstrap_mean(columns["diversity"], rounds=rounds, seed=seed)
        figures["novelty"] = bootstrap_mean(columns["novelty"], rounds=rounds, seed=seed)
        figures["popularity"] = bootstrap_mean(columns["popularity"], rounds=rounds, seed=seed)
        figures["empty_rate"] = bootstrap_mean(columns["empty"], rounds=rounds, seed=seed)
        latency = np.asarray(run.latency_ms)
        figures["latency_p50_ms"] = round(float(np.percentile(latency, 50)), 3)
        figures["latency_p99_ms"] = round(float(np.percentile(latency, 99)), 3)
        figures["users"] = len(split.users)
        figures["errors"] = sum(run.errors.values())
        figures["empty_reasons"] = dict(run.empty_reasons.most_common(5))
        metrics[run.name] = figures
        recall_by_k[run.name] = [
            float(
                np.mean(
                    [
                        len(set(run.lists.get(u, [])[:n]) & split.relevant[u])
                        / len(split.relevant[u])
                        for u in split.users
                    ]
                )
            )
            for n in range(1, k + 1)
        ]
        popularity[run.name] = np.array(
            [count_of.get(i, 0) for u in split.users for i in run.lists.get(u, [])], dtype=np.int64
        )
    compared: dict[str, dict[str, Interval]] = {}
    base = runs[0].name
    for run in runs[1:]:
        compared[run.name] = {
            f"{metric}@{k}": bootstrap_paired(
                per_user[run.name][metric], per_user[base][metric], rounds=rounds, seed=seed
            )
            for metric in ("ndcg", "recall", "precision", "map")
        }
    return Evaluation(
        split=split,
        k=k,
        runs=runs,
        metrics=metrics,
        per_user=per_user,
        compared=compared,
        recall_by_k=recall_by_k,
        popularity=popularity,
        catalogue_size=catalogue,
        seconds=seconds,
        settings=settings,
    )
