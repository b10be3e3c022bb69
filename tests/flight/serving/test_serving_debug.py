"""Debug output is off unless the service was started with it (a public endpoint must not
hand every candidate id and internal column to any caller), with a token for the team."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flight_test_ops import Items
from serving_helpers import ServerThread

import flight
from flight import Pipeline

Serve = Callable[[Any], ServerThread]


def make_app(**options: Any) -> flight.App:
    app = flight.App("debug-test", **options)
    pipeline = Pipeline("listed", item_type="item", includes=[Items(ids=list(range(5000)))])
    app.serve_pipeline(pipeline)

    @app.endpoint("/recs")
    async def recs() -> flight.Result:
        return await pipeline.execute()

    return app


def test_debug_is_refused_by_default_and_the_answer_says_how_to_turn_it_on(serve: Serve) -> None:
    url = serve(make_app(env={})).url
    for answer in (
        httpx.get(f"{url}/recs", params={"debug": "true"}),
        httpx.post(f"{url}/pipelines/listed/execute", params={"debug": "true"}, json={}),
    ):
        assert answer.status_code == 403, answer.text
        assert "FLIGHT_DEBUG=1" in answer.json()["error"]
        assert "Flight-Debug-Token" in answer.json()["error"]
    plain = httpx.get(f"{url}/recs")
    assert plain.status_code == 200 and plain.json()["debug"] is None
    assert httpx.get(f"{url}/explorer/").status_code == 404  # no explorer without debug


def test_a_debug_token_opens_it_for_those_who_have_it(serve: Serve) -> None:
    url = serve(make_app(env={"FLIGHT_DEBUG_TOKEN": "s3cret"})).url
    wrong = httpx.get(f"{url}/recs", params={"debug": "true"}, headers={"Flight-Debug-Token": "x"})
    assert wrong.status_code == 403
    right = httpx.get(
        f"{url}/recs", params={"debug": "true"}, headers={"Flight-Debug-Token": "s3cret"}
    )
    assert right.status_code == 200
    trace = right.json()["debug"][0]
    assert trace["n_output"] == 5000 and len(trace["output_ids"]) == 1000  # ids capped
    assert trace["ids_truncated"] is True


def test_debug_on_for_everyone_when_started_with_it(serve: Serve) -> None:
    url = serve(make_app(env={"FLIGHT_DEBUG": "1"})).url
    assert httpx.get(f"{url}/recs", params={"debug": "true"}).status_code == 200
    assert httpx.get(f"{url}/explorer/").status_code == 200


def test_an_explorer_without_debug_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="explorer runs pipelines with debug output"):
        flight.App("x", explorer=True, env={})


def test_a_slow_step_blocks_neither_health_checks_nor_the_budget(serve: Serve) -> None:
    """A CPU-heavy scoring step once ran on the event loop: /healthz waited for it, and a
    request with a 200 ms budget got a 200 after the whole step."""
    import threading
    import time

    import flight.operators as fo

    class SlowScore(fo.TransformOperator):
        def __call__(self, df: Any, **ctx: Any) -> Any:
            time.sleep(1.5)  # stands for heavy scoring (numpy releases the GIL the same way)
            return df.assign(score=1.0)

    app = flight.App("slow", env={})
    app.serve_pipeline(
        Pipeline("slow", item_type="item", includes=[Items(ids=[1, 2, 3])]) | SlowScore()
    )
    url = serve(app).url
    finished: dict[str, int] = {}

    def slow_request() -> None:
        finished["slow"] = httpx.post(
            f"{url}/pipelines/slow/execute", json={}, timeout=30
        ).status_code

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the step is running now
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    assert worker.is_alive()  # health answered while the step was still working
    worker.join()
    assert finished["slow"] == 200
    late = httpx.post(
        f"{url}/pipelines/slow/execute", params={"budget_ms": 200}, json={}, timeout=30
    )
    assert late.status_code == 504, late.text


def test_bodies_and_configs_are_bounded(serve: Serve, tmp_path: Any) -> None:
    """A 100k-deep JSON body got a 500, and a YAML alias bomb in a config folder took the
    server to 4.6 GB: both are refused with a clear 4xx / config error now."""
    from flight import ConfigError
    from flight.config import load_config_file

    app = make_app(env={"FLIGHT_MAX_BODY_BYTES": "65536"})
    url = serve(app).url
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = httpx.post(
        f"{url}/pipelines/listed/execute",
        content=b'{"a": ' + deep[:60_000] + b"}",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422 and "nested too deeply" in answer.text
    big = httpx.post(f"{url}/pipelines/listed/execute", content=b"x" * 100_000)
    assert big.status_code == 413 and "FLIGHT_MAX_BODY_BYTES" in big.json()["error"]
    assert httpx.post(f"{url}/pipelines/listed/execute", json={}).status_code == 200

    bomb = tmp_path / "bomb.yaml"
    lines = ["name: bomb", "item_type: item", 'a: &a ["lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for level in "bcdefghi":
        lines.append(f"{level}: &{level} [{', '.join(['*' + prev] * 9)}]")
        prev = level
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"aliases .*expand to more than"):
        load_config_file(bomb)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\n# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="above the limit"):
        load_config_file(huge)
