"""Request deadlines in the engine: sources get what is left, cut sources are named, an
optional cut source gives a partial result, a required one a clear failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flight_test_ops import Items, Never

import flight
import flight.operators as fo
from flight import Deadline, Pipeline, SourceError, deadline, time_left

SEEN: list[float | None] = []  # what LeftOver was given, per call
CALLS: list[int] = []  # FailsFast attempts


class LeftOver(fo.SourceOperator):
    """Records how much of the deadline it was given."""

    async def __call__(self, **ctx: Any) -> fo.Source:
        SEEN.append(time_left())
        return fo.Source([100])


class FailsFast(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        CALLS.append(1)
        raise ConnectionError("refused")


def pipe(*includes: fo.SourceOperator, excludes: tuple[fo.SourceOperator, ...] = ()) -> Pipeline:
    return Pipeline("budgeted", item_type="item").initialize(
        includes=list(includes), excludes=list(excludes)
    ) | fo.Sort("item")


async def test_optional_source_cut_by_deadline_gives_partial_result() -> None:
    slow = Never().with_policy(optional=True, timeout=30)
    with deadline(0.05):
        result = await pipe(Items([1, 2]), slow).execute()
    assert result.ok and result.partial
    assert result.items["item"].tolist() == [1, 2]
    assert result.cut == ("Never()",)
    stats = {s.name: s for s in result.stats}
    assert stats["Never"].status == "cut"
    assert "cut: the request deadline of 50ms ran out" in stats["Never"].message
    assert result.warnings and "optional include skipped" in result.warnings[0]
    body = result.to_dict()
    assert body["partial"] is True and body["cut"] == ["Never()"]


async def test_required_source_cut_ends_the_run_with_a_reason() -> None:
    with deadline(0.05):
        result = await pipe(Items([1, 2]), Never().with_policy(timeout=30)).execute()
    assert not result.ok and not result.partial
    assert isinstance(result.error, SourceError) and result.error.timed_out
    assert result.reason is not None and "Never() cut: the request deadline" in result.reason
    assert result.cut == ("Never()",)
    assert len(result.items) == 0


async def test_sources_get_what_is_left_of_the_deadline() -> None:
    SEEN.clear()
    with deadline(5.0):
        await pipe(LeftOver().with_policy(timeout=60)).execute()
    (left,) = SEEN
    assert left is not None and 0 < left <= 5.0
    SEEN.clear()
    await pipe(LeftOver()).execute()
    assert SEEN == [None]  # no deadline, no limit


async def test_no_retry_is_started_without_time_for_it() -> None:
    CALLS.clear()
    flaky = FailsFast().with_policy(retries=3, backoff=10.0, optional=True)
    with deadline(0.2):
        result = await pipe(Items([1]), flaky).execute()
    stats = {s.name: s for s in result.stats}
    assert CALLS == [1]  # the backoff would outlast the deadline
    assert stats["FailsFast"].retries == 0 and stats["FailsFast"].status == "cut"
    assert "an earlier attempt failed: ConnectionError: refused" in stats["FailsFast"].message


async def test_expired_deadline_runs_no_source() -> None:
    SEEN.clear()
    with deadline(0.0):
        result = await pipe(LeftOver().with_policy(optional=True), Items([3])).execute()
    assert SEEN == []  # never called
    assert result.cut == ("LeftOver()", "Items(ids=[3], column=None, values=[])")
    assert len(result.items) == 0  # Items was cut too, and it is required: the run failed
    assert (
        result.reason is not None and "Items(ids=[3], column=None, values=[]) cut" in result.reason
    )


async def test_steps_are_not_cut_and_a_fast_pipeline_is_not_partial() -> None:
    with deadline(10.0):
        result = await pipe(Items([3, 1, 2])).execute()
    assert result.ok and not result.partial and result.cut == ()
    assert result.items["item"].tolist() == [1, 2, 3]


def test_nested_deadlines_keep_the_earlier_one() -> None:
    now = [100.0]

    def clock() -> float:
        return now[0]

    with deadline(1.0, clock=clock) as outer:
        assert outer is not None
        with deadline(5.0, clock=clock) as inner:
            assert inner is outer  # a callee cannot extend its budget
        with deadline(0.5, clock=clock) as shorter:
            assert shorter is not None and shorter.at == 100.5
            assert flight.deadline is deadline
        with deadline(None) as same:
            assert same is outer
        now[0] = 100.75
        assert outer.remaining() == pytest.approx(0.25) and not outer.expired
        now[0] = 101.0
        assert outer.expired
    assert time_left() is None


def test_deadline_rejects_nonsense() -> None:
    for bad in (-1, float("nan"), "soon"):
        with pytest.raises(ValueError, match="seconds >= 0"):
            Deadline(bad)  # type: ignore[arg-type]


async def test_deadline_is_per_task_context() -> None:
    async def in_task() -> float | None:
        return time_left()

    with deadline(3.0):
        inherited = await asyncio.create_task(in_task())
    outside = await asyncio.create_task(in_task())
    assert inherited is not None and 0 < inherited <= 3.0
    assert outside is None
