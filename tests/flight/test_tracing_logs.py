"""JSON-lines logs (what served apps write): one object per record, Flight's per-operator
fields at the top level, and the trace and span ids of the code that logged."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from flight_test_ops import Items
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flight.operators as fo
from flight import Pipeline, tracing
from flight.logs import (
    JsonLinesFormatter,
    configure_json_logging,
    direct_writer,
    stop_json_logging,
)

PIPE = Pipeline("logged", item_type="item").initialize(includes=[Items([3, 1, 2])]) | fo.Sort(
    "item"
)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    engine_log = logging.getLogger("flight.engine")
    configure_json_logging("INFO", stream=stream, logger=engine_log)
    yield stream
    stop_json_logging()
    engine_log.setLevel(logging.NOTSET)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    stop_json_logging()  # flush the writer thread
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_operator_records_are_json_with_their_span_ids(lines: io.StringIO) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporter)
    try:
        await PIPE.execute()
    finally:
        tracing.shutdown_tracing()
    got = records(lines)
    by_operator = {r.get("operator"): r for r in got if "operator" in r}
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("Items", "Sort"):
        record = by_operator[name]
        span = spans[name]
        assert record["trace_id"] == f"{span.context.trace_id:032x}"
        assert record["span_id"] == f"{span.context.span_id:016x}"
        assert record["pipeline"] == "logged" and record["status"] == "ok"
        assert record["level"] == "INFO" and record["logger"] == "flight.engine"
    assert by_operator["Items"]["n_out"] == 3
    assert (
        by_operator["Sort"]["message"]
        == "Sort(by='item', desc=False) sorted 3 items in "
        + str(by_operator["Sort"]["message"]).rsplit(" in ", 1)[1]
    )
    summary = [r for r in got if r.get("event") == "summary"]
    assert summary and summary[0]["n_items"] == 3
    assert summary[0]["span_id"] == f"{spans['pipeline logged'].context.span_id:016x}"


async def test_records_outside_a_trace_have_no_ids(lines: io.StringIO) -> None:
    await PIPE.execute()
    got = records(lines)
    assert got and all("trace_id" not in r for r in got)


def test_formatter_keeps_extra_fields_and_exceptions() -> None:
    log = logging.getLogger("flight.tests.formatter")
    try:
        raise ValueError("bad value")
    except ValueError:
        record = log.makeRecord(
            log.name, logging.ERROR, __file__, 1, "failed %s", ("x",), None, extra={"user": 7}
        )
        record.exc_info = sys.exc_info()
    body = json.loads(JsonLinesFormatter().format(record))
    assert body["message"] == "failed x" and body["user"] == 7 and body["level"] == "ERROR"
    assert "ValueError: bad value" in body["exception"]
    assert body["ts"].endswith("Z")


def test_lines_are_written_in_batches_and_none_is_lost_at_stop() -> None:
    stream = io.StringIO()
    log = logging.getLogger("flight.test.batches")
    configure_json_logging("INFO", stream=stream, logger=log)
    try:
        for i in range(2000):
            log.info("line %d", i, extra={"n": i})
    finally:
        stop_json_logging()
        log.setLevel(logging.NOTSET)
    got = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["n"] for r in got] == list(range(2000))
    assert got[1999]["message"] == "line 1999"


TIMED = ("ts", "run_id", "elapsed_ms")


async def test_an_operators_line_is_the_same_written_directly_or_through_a_record() -> None:
    # with configure_json_logging the engine writes its lines directly; with another handler
    # on the way, it logs records; the lines must be the same but for the time
    stream = io.StringIO()
    engine_log = logging.getLogger("flight.engine")
    configure_json_logging("INFO", stream=stream, logger=engine_log)
    engine_log.propagate = False  # (pytest's own handlers sit on the root logger)
    try:
        assert direct_writer(engine_log, logging.INFO) is not None
        await PIPE.execute()
        direct = records(stream)
        stream.seek(0)
        stream.truncate()
        configure_json_logging("INFO", stream=stream, logger=engine_log)
        extra = logging.NullHandler()  # another handler: records go down the chain again
        engine_log.addHandler(extra)
        try:
            assert direct_writer(engine_log, logging.INFO) is None
            await PIPE.execute()
        finally:
            engine_log.removeHandler(extra)
        through = records(stream)
    finally:
        stop_json_logging()
        engine_log.setLevel(logging.NOTSET)
        engine_log.propagate = True

    def comparable(lines: list[dict[str, object]]) -> list[dict[str, object]]:
        timeless = [{k: v for k, v in r.items() if k not in TIMED} for r in lines]
        for r in timeless:
            r["message"] = re.sub(r" in [\d.]+ ?ms", "", str(r["message"]))
        return timeless

    assert len(direct) == len(through) >= 3
    assert comparable(direct) == comparable(through)
    assert any(str(r["message"]).startswith("After initialization") for r in direct)
