"""The engine: set algebra, merging, concurrency, policy, reasons, errors, debug, hooks, logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from typing import Any

import pandas as pd
import pytest
from flight_test_ops import AddDouble, Items, KeepEven, Never, SyncItems

import flight.engine
import flight.operators as fo
from flight import Engine, ExecuteError, Hooks, OperatorStats, Pipeline, RunInfo, SourcePolicy
from flight.errors import OperatorError, PipelineDefinitionError, ResultShapeError, SourceError
from flight.result import Result


def pipe(includes: list[Any], excludes: list[Any] = (), *steps: Any) -> Pipeline:  # type: ignore[assignment]
    p = Pipeline("t", item_type="item").initialize(includes=includes, excludes=excludes)
    return p | list(steps)


async def test_union_keeps_each_item_once_in_include_order() -> None:
    result = await pipe([Items([3, 1, 2]), Items([2, 5, 1, 4])]).execute()
    assert result.items["item"].tolist() == [3, 1, 2, 5, 4]
    assert result.n_candidates == 5


async def test_union_minus_excludes() -> None:
    p = pipe([Items([1, 2, 3]), Items([4, 5])], [Items([2, 9]), Items([5])])
    result = await p.execute()
    assert result.items["item"].tolist() == [1, 3, 4]


async def test_columns_from_several_sources_merge_by_key_first_include_wins() -> None:
    a = Items([1, 2], column="score", values=[0.1, 0.2])
    b = Items([2, 3], column="score", values=[0.9, 0.3])
    c = Items([3, 1], column="other", values=[7.0, 8.0])
    result = await pipe([a, b, c]).execute(return_cols=["item", "score", "other"])
    assert result.items["item"].tolist() == [1, 2, 3]
    assert result.items["score"].tolist() == [0.1, 0.2, 0.3]
    assert result.to_dict()["other"] == [8.0, None, 7.0]


async def test_source_may_key_by_index_or_return_a_keyed_series() -> None:
    class ByIndex(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(pd.DataFrame({"pop": [5, 6]}, index=pd.Index([10, 11], name="item")))

    class AsSeries(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(pd.Series([0.5], index=pd.Index([11], name="item"), name="sim"))

    result = await pipe([ByIndex(), AsSeries()]).execute(return_cols=["item", "pop", "sim"])
    assert result.items["item"].tolist() == [10, 11]
    assert result.items["pop"].tolist() == [5, 6]
    assert result.items["sim"].iloc[1] == 0.5


async def test_string_item_keys_work_like_integers() -> None:
    class Skus(fo.SourceOperator):
        skus: str

        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(self.skus.split(","))

    p = Pipeline("s", item_type="sku").initialize(
        includes=[Skus("a-1,b-2,c-3")], excludes=[Skus("b-2")]
    )
    result = await (p | fo.Sort("sku", desc=True)).execute()
    assert result.items["sku"].tolist() == ["c-3", "a-1"]


async def test_sources_run_concurrently() -> None:
    # Each source waits for the other to have started: sequential execution would time out.
    both_started = asyncio.Barrier(2)

    class Rendezvous(fo.SourceOperator):
        tag: int

        async def __call__(self, **ctx: Any) -> fo.Source:
            await both_started.wait()
            return fo.Source([self.tag])

    p = pipe([Rendezvous(1)], [Rendezvous(2)]).with_options(source_defaults={"timeout": 5})
    result = await p.execute()
    assert result.ok, result.reason
    assert result.items["item"].tolist() == [1]


async def test_sync_sources_run_in_threads_and_do_not_block_the_loop() -> None:
    import threading

    seen: list[str] = []

    class Blocking(fo.SourceOperator):
        def __call__(self, **ctx: Any) -> fo.Source:
            seen.append(threading.current_thread().name)
            return fo.Source([1])

    result = await pipe([Blocking(), SyncItems([2])]).execute()
    assert result.items["item"].tolist() == [1, 2]
    assert seen and seen[0] != threading.main_thread().name


async def test_source_timeout_with_retries_gives_reason() -> None:
    never = Never().with_policy(timeout=0.01, retries=3, backoff=0)
    result = await pipe([Items([1]), never]).execute()
    assert result.reason == "Never() timed out after 3 retries"
    assert isinstance(result.error, SourceError) and result.error.timed_out
    assert result.error.operator == never
    stats = result.stats[1]
    assert (stats.status, stats.retries, stats.timeouts) == ("failed", 3, 4)
    assert len(result.items) == 0


async def test_failing_source_is_retried_then_succeeds() -> None:
    calls = itertools.count(1)

    class Flaky(fo.SourceOperator):
        retries = 2
        backoff = 0

        async def __call__(self, **ctx: Any) -> fo.Source:
            if next(calls) < 3:
                raise ConnectionError("inventory service unavailable")
            return fo.Source([7])

    result = await pipe([Flaky()]).execute()
    assert result.ok and result.items["item"].tolist() == [7]
    assert result.stats[0].retries == 2


async def test_source_error_reason_names_operator_and_cause() -> None:
    class Broken(fo.SourceOperator):
        warehouse: str = "any"
        retries = 0

        async def __call__(self, **ctx: Any) -> fo.Source:
            raise ConnectionError("refused")

    result = await pipe([Broken()]).execute()
    assert result.reason == "Broken(warehouse='any') failed: ConnectionError: refused"
    assert isinstance(result.error, SourceError)
    assert isinstance(result.error.__cause__, ConnectionError)


async def test_optional_source_failure_continues_and_says_so() -> None:
    optional = Never().with_policy(timeout=0.01, retries=0, optional=True)
    result = await pipe([Items([1, 2]), optional]).execute()
    assert result.ok
    assert result.items["item"].tolist() == [1, 2]
    assert result.warnings == ("Never() timed out after 0.01s; optional include skipped",)
    assert result.to_dict()["warnings"] == list(result.warnings)
    assert result.stats[1].status == "skipped"


async def test_required_source_failure_cancels_the_others() -> None:
    class Boom(fo.SourceOperator):
        retries = 0

        async def __call__(self, **ctx: Any) -> fo.Source:
            raise RuntimeError("boom")

    result = await pipe([Never().with_policy(timeout=None), Boom()]).execute()
    assert result.reason == "Boom() failed: RuntimeError: boom"
    assert result.stats[0].status == "cancelled"


async def test_pipeline_and_engine_policy_defaults_apply_to_sources() -> None:
    engine = Engine(policy=SourcePolicy(timeout=0.01, retries=0, backoff=0))
    result = await engine.execute(pipe([Never()]))
    assert result.reason == "Never() timed out after 0.01s"
    p = pipe([Never()]).with_options(source_defaults={"retries": 2, "timeout": 0.01})
    result = await engine.execute(p)
    assert result.reason == "Never() timed out after 2 retries"


async def test_empty_reason_names_filter_and_count() -> None:
    class MatchDepartment(fo.FilterOperator):
        product_id: int

        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            return df[df["item"] < 0].index

    p = pipe([Items(list(range(53)))], [], MatchDepartment(product_id=3), fo.Head(5))
    result = await p.execute()
    assert result.ok
    assert (
        result.reason == "MatchDepartment(product_id=3) returned 0 items after filtering 53 items"
    )
    assert [s.status for s in result.stats] == ["ok", "ok", "not_run"]
    assert result.to_dict() == {
        "item": [],
        "reason": result.reason,
        "warnings": [],
        "partial": False,
        "cut": [],
        "debug": None,
    }


async def test_empty_reason_when_excludes_remove_everything() -> None:
    result = await pipe([Items([1, 2])], [Items([1, 2, 3])], fo.Head(1)).execute()
    assert (
        result.reason
        == "excludes removed all 2 candidates (Items(ids=[1, 2, 3], column=None, values=[]))"
    )


async def test_empty_reason_when_includes_return_nothing() -> None:
    result = await pipe([Items([])]).execute()
    assert result.reason == "no candidates: Items(ids=[], column=None, values=[]) returned 0 items"


async def test_step_error_is_reported_with_the_operator() -> None:
    class Explode(fo.TransformOperator):
        factor: float = 2.0

        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.DataFrame:
            raise ValueError("model not loaded")

    p = pipe([Items([1, 2])], [], Explode(), fo.Head(1))
    result = await p.execute()
    assert result.reason == "Explode(factor=2.0) failed: ValueError: model not loaded"
    assert isinstance(result.error, OperatorError) and result.error.operator == Explode()
    assert [s.status for s in result.stats] == ["ok", "failed", "not_run"]
    with pytest.raises(OperatorError, match="model not loaded"):
        result.raise_for_error()


async def test_filter_returning_foreign_labels_is_a_shape_error() -> None:
    class Wrong(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            return pd.Index([999])

    result = await pipe([Items([1, 2])], [], Wrong()).execute()
    assert isinstance(result.error, ResultShapeError)
    assert "not rows of the df it was given" in (result.reason or "")


async def test_labels_of_rows_filtered_out_before_are_refused() -> None:
    # in increasing order, as df[mask].index gives them, but one of them is a row that an
    # earlier step removed: not a row of the df this step was given
    class DropFirst(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            return df.index[1:]

    class Sneaky(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            return pd.Index([0, *df.index])

    kept = await pipe([Items([1, 2, 3])], [], DropFirst(), DropFirst()).execute()
    assert kept.items["item"].tolist() == [3]
    result = await pipe([Items([1, 2, 3])], [], DropFirst(), Sneaky()).execute()
    assert isinstance(result.error, ResultShapeError)
    assert "not rows of the df it was given" in (result.reason or "")


async def test_a_quick_user_step_moves_onto_the_loop_and_a_slow_one_stays_off_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a busy CI machine can take milliseconds for a thread hop: "quick" is 250 ms here
    monkeypatch.setattr(flight.engine, "INLINE_BELOW", 0.25)
    loop_thread = threading.current_thread()
    seen: dict[str, list[bool]] = {"quick": [], "slow": []}

    class Quick(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            seen["quick"].append(threading.current_thread() is loop_thread)
            return df.index

    class SlowOnce(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            seen["slow"].append(threading.current_thread() is loop_thread)
            if len(seen["slow"]) == 6:  # one heavy request among quick ones
                time.sleep(0.3)
            return df.index

    p = pipe([Items([1, 2, 3])], [], Quick(), SlowOnce())
    for _ in range(12):
        assert (await p.execute()).items["item"].tolist() == [1, 2, 3]
    # off the loop until it has shown three quick runs after its first, then on it
    assert seen["quick"] == [False] * 4 + [True] * 8
    # the heavy run (the sixth, on the loop) sends it back to a worker thread for good
    assert seen["slow"] == [False] * 4 + [True] * 2 + [False] * 6


async def test_user_filter_and_transform_see_dataframes_and_mask_works() -> None:
    class Odd(fo.FilterOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Series:
            return df["item"] % 2 == 1

    p = pipe([Items([1, 2, 3, 4, 6])], [], KeepEven(), AddDouble())
    result = await p.execute(return_cols=["item", "double"])
    assert result.items.to_dict("list") == {"item": [2, 4, 6], "double": [4, 8, 12]}
    result = await pipe([Items([1, 2, 3])], [], Odd()).execute()
    assert result.items["item"].tolist() == [1, 3]


async def test_filter_returning_a_nullable_boolean_mask_keeps_its_true_rows() -> None:
    class Since(fo.FilterOperator):  # a comparison with an Int64 column gives "boolean"
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Series:
            year = pd.Series([1990, None, 2005], dtype="Int64", index=df.index)
            return year >= 2000

    result = await pipe([Items([1, 2, 3])], [], Since()).execute()
    assert result.error is None, result.reason
    assert result.items["item"].tolist() == [3]  # the missing year keeps no row


async def test_transform_changing_rows_is_rejected() -> None:
    class Dropper(fo.TransformOperator):
        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.DataFrame:
            return df.head(1)

    result = await pipe([Items([1, 2])], [], Dropper()).execute()
    assert isinstance(result.error, ResultShapeError)
    assert "use a FilterOperator" in (result.reason or "") or "FilterOperator" in (
        result.reason or ""
    )


async def test_context_reaches_operators_that_ask_for_it() -> None:
    class ForUser(fo.SourceOperator):
        async def __call__(self, user_id: int) -> fo.Source:
            return fo.Source([user_id * 10])

    result = await pipe([ForUser()]).execute(user_id=4, unrelated="x")
    assert result.items["item"].tolist() == [40]


async def test_missing_context_is_an_execute_error_before_anything_runs() -> None:
    started: list[int] = []

    class ForUser(fo.SourceOperator):
        async def __call__(self, user_id: int) -> fo.Source:
            started.append(user_id)
            return fo.Source([user_id])

    with pytest.raises(ExecuteError, match=r"needs context 'user_id' \(for ForUser\(\)\)"):
        await pipe([ForUser(), Items([1])]).execute()
    assert started == []


async def test_return_cols_in_order_and_unknown_column_reported() -> None:
    p = pipe([Items([1, 2], column="s", values=[0.5, 0.25])])
    result = await p.execute(return_cols=["s", "item"])
    assert list(result.items.columns) == ["s", "item"]
    result = await p.execute(return_cols=["item", "nope"])
    assert isinstance(result.error, ExecuteError)
    assert "return_cols asks for 'nope'" in (result.reason or "")
    own = p.with_options(return_cols=["item", "nope"])  # the pipeline's own return_cols
    result = await own.execute()
    assert isinstance(result.error, PipelineDefinitionError)
    assert "pipeline 't': its return_cols asks for 'nope'" in (result.reason or "")


async def test_empty_candidates_are_not_an_error_even_when_return_cols_come_from_steps() -> None:
    # the source returns no items, so AddDouble (which sets `double`) never runs
    p = pipe([Items([], column="s", values=[])], [], AddDouble()).with_options(
        return_cols=["item", "double", "s"]
    )
    result = await p.execute()
    assert result.error is None
    assert result.reason == "no candidates: Items(ids=[], column='s', values=[]) returned 0 items"
    assert list(result.items.columns) == ["item", "double", "s"] and len(result.items) == 0
    body = result.to_dict()
    assert body["double"] == [] and body["reason"] == result.reason
    # the same when a step empties the candidates before the one that sets the column
    p = pipe([Items([1, 3])], [], KeepEven(), AddDouble()).with_options(
        return_cols=["item", "double"]
    )
    result = await p.execute()
    assert result.error is None and result.reason is not None
    assert "KeepEven() returned 0 items" in result.reason
    assert list(result.items.columns) == ["item", "double"]
    with pytest.raises(ExecuteError, match="clash"):
        await p.execute(return_cols=["reason"])


async def test_no_includes_is_a_definition_error() -> None:
    from flight import PipelineDefinitionError

    with pytest.raises(PipelineDefinitionError, match="no includes"):
        await Pipeline("empty", item_type="item").execute()


async def test_debug_trace_has_every_include_exclude_and_step() -> None:
    p = pipe([Items([1, 2, 3, 4])], [Items([4])], KeepEven(), fo.Head(1))
    result = await p.execute(debug=True)
    trace = result.debug
    assert trace is not None
    assert [(e["name"], e["role"]) for e in trace] == [
        ("Items", "include"),
        ("Items", "exclude"),
        ("KeepEven", "step"),
        ("Head", "step"),
    ]
    keys = {"name", "kind", "role", "kwargs", "input_ids", "output_ids", "n_input", "n_output"}
    assert all(keys <= set(e) for e in trace)
    assert trace[0]["output_ids"] == [1, 2, 3, 4] and trace[1]["output_ids"] == [4]
    assert (trace[2]["input_ids"], trace[2]["output_ids"]) == ([1, 2, 3], [2])
    assert (trace[3]["n_input"], trace[3]["n_output"]) == (1, 1)
    assert trace[3]["kwargs"] == {"n": 1}
    json.dumps(result.to_dict())  # JSON-ready, debug included


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def pipeline_start(self, run: RunInfo) -> None:
        self.events.append(("pipeline_start", run.pipeline))

    def operator_start(self, stats: OperatorStats) -> None:
        self.events.append(("start", stats.name))

    def operator_end(self, stats: OperatorStats) -> None:
        self.events.append(("end", (stats.name, stats.n_in, stats.n_out, stats.status)))

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        self.events.append(("pipeline_end", len(result.items)))


async def test_hooks_see_pipeline_and_operator_events() -> None:
    recorder = Recorder()
    engine = Engine(hooks=[recorder], log=False)
    await engine.execute(pipe([Items([1, 2, 3])], [], KeepEven()))
    assert recorder.events == [
        ("pipeline_start", "t"),
        ("start", "Items"),
        ("end", ("Items", 0, 3, "ok")),
        ("start", "KeepEven"),
        ("end", ("KeepEven", 3, 1, "ok")),
        ("pipeline_end", 1),
    ]


async def test_failing_hook_does_not_break_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    class Bad(Hooks):
        def operator_end(self, stats: OperatorStats) -> None:
            raise RuntimeError("exporter down")

    result = await Engine(hooks=[Bad()], log=False).execute(pipe([Items([1])]))
    assert result.ok and len(result.items) == 1
    assert "exporter down" in caplog.text


async def test_log_records_are_structured_with_human_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = itertools.count()
    engine = Engine(clock=lambda: next(ticks) * 0.031)  # every clock read advances 31ms
    caplog.set_level(logging.INFO, logger="flight.engine")

    class MatchDepartment(fo.FilterOperator):
        product_id: int

        def __call__(self, df: pd.DataFrame, **ctx: Any) -> pd.Index:
            return df[df["item"] % 10 == 0].index

    p = pipe(
        [Items(list(range(500)), column="score", values=[0.8] * 500)],
        [],
        MatchDepartment(product_id=3),
    )
    await engine.execute(p)
    records = [r for r in caplog.records if r.name == "flight.engine"]
    step = next(r for r in records if getattr(r, "flight", {}).get("operator") == "MatchDepartment")
    assert (
        step.getMessage() == "MatchDepartment(product_id=3) filtered 500 items to 50 items in 31ms"
    )
    assert step.flight["args"] == {"product_id": 3}  # type: ignore[attr-defined]
    assert (step.flight["n_in"], step.flight["n_out"]) == (500, 50)  # type: ignore[attr-defined]
    assert step.flight["pipeline"] == "t"  # type: ignore[attr-defined]
    summary = records[-1]
    assert summary.getMessage() == "Returning 50 items with mean(score)=0.8"


async def test_executions_do_not_share_state() -> None:
    p = pipe([Items([1, 2, 3, 4])], [], AddDouble(), KeepEven())
    results = await asyncio.gather(*(p.execute() for _ in range(5)))
    assert all(r.items["item"].tolist() == [2, 4] for r in results)


async def test_repeated_id_within_a_source_keeps_its_first_row() -> None:
    dupes = Items([1, 2, 1], column="score", values=[0.9, 0.5, 0.1])
    result = await pipe([dupes]).execute(return_cols=["item", "score"])
    assert result.items.to_dict("list") == {"item": [1, 2], "score": [0.9, 0.5]}


async def test_source_without_the_key_column_is_reported() -> None:
    class NoKey(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(pd.DataFrame({"sku": [1]}))

    result = await pipe([NoKey()]).execute()
    assert isinstance(result.error, SourceError)
    assert result.reason == (
        "NoKey() returned a DataFrame without the item key column 'item' (columns: sku); "
        "add it, or make it the index"
    )


async def test_weighted_score_on_a_missing_column_warns_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flight.engine")
    typo = fo.WeightedScore({"score": 1.0, "scroe": 0.5})
    p = pipe([Items([1, 2], column="score", values=[0.5, 0.25])], [], typo)
    result = await p.execute(debug=True)
    assert result.items["score"].tolist() == [0.5, 0.25]  # counted as 0, as before
    (warning,) = result.warnings
    assert warning.startswith(f"{typo!r}: weights name 'scroe', which the candidates lack")
    assert "did you mean 'score'?" in warning
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.flight["operator"] == "WeightedScore"  # type: ignore[attr-defined]
    assert "'scroe'" in record.flight["warnings"][0]  # type: ignore[attr-defined]
    assert "warning: weights name 'scroe'" in record.getMessage()
    assert "'scroe'" in (result.debug or [])[-1]["message"]
    assert any("'scroe'" in line for line in result.log_lines())
    # spelled right: no warning
    result = await pipe(
        [Items([1], column="score", values=[0.5])], [], fo.WeightedScore({"score": 1.0})
    ).execute()
    assert result.warnings == ()


class _AnyIds(fo.SourceOperator):
    """Returns exactly the ids it is given (any type)."""

    ids: list[int | str]

    async def __call__(self, **ctx: Any) -> fo.Source:
        return fo.Source(list(self.ids))


async def test_sources_that_disagree_on_id_types_are_refused_not_silently_merged() -> None:
    """[1, 2, 3] and ["2", "3", "4"] with 3 excluded once gave [1, 2, '2', '3', '4']:
    duplicates and an excluded item. Now the run fails and says which sources and types."""
    from flight.errors import ItemTypeMismatchError

    mixed = Pipeline(
        "mixed",
        item_type="item",
        includes=[_AnyIds(ids=[1, 2, 3]), _AnyIds(ids=["2", "3", "4"])],
        excludes=[_AnyIds(ids=[3])],
    )
    result = await mixed.execute()
    assert isinstance(result.error, ItemTypeMismatchError) and len(result.items) == 0
    message = str(result.error)
    assert "returned number ids (e.g. 1)" in message and "returned string ids (e.g. '2')" in message
    assert ".astype(int)" in message
    # an exclude of the wrong type would exclude nothing: refused too
    wrong_exclude = Pipeline(
        "wrong_exclude",
        item_type="item",
        includes=[_AnyIds(ids=[1, 2, 3])],
        excludes=[_AnyIds(ids=["3"])],
    )
    assert isinstance((await wrong_exclude.execute()).error, ItemTypeMismatchError)
    # one type everywhere works, and an empty source agrees with anything
    same = Pipeline(
        "same",
        item_type="item",
        includes=[_AnyIds(ids=["1", "2", "3"]), _AnyIds(ids=["2", "3", "4"]), _AnyIds(ids=[])],
        excludes=[_AnyIds(ids=["3"])],
    )
    assert (await same.execute()).items["item"].tolist() == ["1", "2", "4"]


async def test_a_data_column_named_like_a_result_key_is_an_error_not_overwritten() -> None:
    class WithReason(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source(pd.DataFrame({"item": [1, 2], "reason": ["new", "popular"]}))

    result = await Pipeline("why", item_type="item", includes=[WithReason()]).execute()
    assert isinstance(result.error, PipelineDefinitionError)
    assert "'reason'" in str(result.error) and "fo.Rename" in str(result.error)
    renamed = Pipeline("why", item_type="item", includes=[WithReason()]) | fo.Rename(
        columns={"reason": "why"}
    )
    assert (await renamed.execute()).items["why"].tolist() == ["new", "popular"]


async def test_the_debug_trace_is_full_when_a_required_source_fails() -> None:
    class Broken(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            raise RuntimeError("feature store down")

    pipeline = Pipeline(
        "broken", item_type="item", includes=[Items(ids=[1, 2]), Broken()]
    ) | fo.Head(n=1)
    result = await pipeline.execute(debug=True)
    assert result.error is not None and result.debug is not None
    by_name = {entry["name"]: entry for entry in result.debug}
    assert set(by_name) == {"Items", "Broken", "Head"}
    assert by_name["Broken"]["status"] == "failed"
    assert "feature store down" in by_name["Broken"]["message"]
    assert by_name["Head"]["status"] == "not_run"


async def test_a_hanging_sync_source_never_starves_another_sources_threads() -> None:
    """Once, the timeout did not stop the worker thread and every sync source shared one
    small pool: after a few requests to a hanging optional source, a healthy required
    source timed out too. Each source class now has its own threads."""
    import threading

    from flight import engine as engine_module

    release = threading.Event()

    class HangsForever(fo.SourceOperator):
        def __call__(self, **ctx: Any) -> fo.Source:
            release.wait(30)  # a blocking client without a timeout
            return fo.Source([99])

    hang = HangsForever().with_policy(timeout=0.05, retries=0, optional=True)
    pipeline = Pipeline("starved", item_type="item", includes=[SyncItems(ids=[1, 2]), hang])
    try:
        for _ in range(3 * engine_module.SOURCE_THREADS):
            result = await pipeline.execute()
            assert result.ok and result.items["item"].tolist() == [1, 2], result.reason
            assert result.warnings  # the hanging source was skipped, and it says so
        last = result.warnings[0]
        assert "still busy" in last or "timed out" in last or "did not answer" in last
    finally:
        release.set()


async def test_no_per_process_state_grows_with_the_ids_seen() -> None:
    """Per-request cost once grew with every id the process had seen (a process-wide
    interner). Ids are now coded per run: nothing is kept between runs."""
    from flight import _interning

    pipeline = Pipeline("fresh", item_type="item", includes=[_AnyIds(ids=[0])])
    for start in range(0, 50_000, 5_000):
        ids = list(range(10**9 + start, 10**9 + start + 5_000))
        result = await Pipeline("fresh", item_type="item", includes=[_AnyIds(ids=ids)]).execute()
        assert len(result.items) == 5_000
    assert (await pipeline.execute()).items["item"].tolist() == [0]
    assert _interning._interners == {}  # no process-wide interner was filled


async def test_missing_context_names_each_key_and_who_needs_it() -> None:
    class ForUser(fo.SourceOperator):
        async def __call__(self, user_id: int, cohort: str) -> fo.Source:
            return fo.Source([user_id])

    with pytest.raises(ExecuteError) as info:
        await pipe([ForUser()]).execute()
    assert info.value.missing == {"cohort": ["ForUser()"], "user_id": ["ForUser()"]}
    assert info.value.problems == []
