"""The pipeline engine endpoint: a directory of configs served by name, reloaded without a
restart; a bad new version is rejected, exposed at GET /pipelines/{name}, and the last good
version keeps serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from flight_test_ops import AddDouble, Items, UserItems  # noqa: F401  (registers the operators the configs use)
from serving_helpers import ServerThread, wait_for

import flight
import flight.operators as fo
from flight.serving import PipelineCatalog

Serve = Callable[[Any], ServerThread]
Client = Callable[[str], httpx.Client]


class UserAsItem(fo.SourceOperator):
    """The user's own id as the only candidate (needs context user_id)."""

    async def __call__(self, user_id: int) -> fo.Source:
        return fo.Source([user_id])


def config(name: str, ids: list[int], *, head: int = 10) -> str:
    steps: list[Any] = [{"Sort": {"by": "score", "desc": True}}, {"Head": {"n": head}}]
    return yaml.safe_dump(
        {
            "name": name,
            "item_type": "item",
            "description": f"{name} test pipeline",
            "includes": [
                {"Items": {"ids": ids, "column": "score", "values": [float(i) for i in ids]}}
            ],
            "steps": steps,
            "return_cols": ["item", "score"],
        }
    )


def write(path: Path, text: str) -> None:
    """Replace a file the way editors do (write elsewhere, rename over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write(folder / "top.yaml", config("top", [1, 2, 3, 4], head=2))
    return folder


@pytest.fixture
def http(configs: Path, serve: Serve, client: Client) -> httpx.Client:
    return client(serve(flight.App("configs-test", configs=configs, debug=True)).url)


def version_of(http: httpx.Client, name: str) -> str | None:
    r = http.get(f"/pipelines/{name}")
    return r.json().get("version") if r.status_code == 200 else None


def serve_config(
    http: httpx.Client, configs: Path, name: str, include: str, steps: str, cols: str
) -> None:
    """Add a one-include config and wait until it serves."""
    text = f"name: {name}\nitem_type: item\nincludes: [{include}]\nsteps: {steps}\n"
    write(configs / f"{name}.yaml", text + f"return_cols: {cols}\n")
    wait_for(lambda: version_of(http, name))


def test_configs_are_listed_and_executed(http: httpx.Client) -> None:
    listing = http.get("/pipelines").json()["pipelines"]
    assert [(p["name"], p["status"], p["source"]) for p in listing] == [("top", "ok", "top.yaml")]
    r = http.post("/pipelines/top/execute", json={})
    assert r.status_code == 200
    assert r.json()["item"] == [4, 3]
    assert r.headers["x-flight-pipeline-version"] == listing[0]["version"]


def test_execute_options_debug_and_return_cols(http: httpx.Client) -> None:
    r = http.post("/pipelines/top/execute?debug=true&return_cols=item", json={})
    body = r.json()
    assert list(body)[:1] == ["item"] and "score" not in body
    assert [e["name"] for e in body["debug"]] == ["Items", "Sort", "Head"]
    r = http.post("/pipelines/top/execute?return_cols=item,nope", json={})
    assert r.status_code == 422
    assert "'nope'" in r.json()["error"]
    assert r.json()["problems"][0]["parameter"] == "return_cols"
    assert r.json()["problems"][0]["in"] == "query"


def test_empty_candidates_answer_200_with_the_return_cols_and_the_reason(
    http: httpx.Client, configs: Path
) -> None:
    # no candidates: AddDouble, which sets `double`, never runs; the answer is empty, not a 422
    serve_config(http, configs, "none", "{Items: {ids: []}}", "[AddDouble]", "[item, double]")
    r = http.post("/pipelines/none/execute", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item"] == [] and body["double"] == []
    assert body["reason"].startswith("no candidates: Items(ids=[]")
    assert body["reason"].endswith("returned 0 items")


def test_return_cols_the_pipeline_never_produces_is_the_pipelines_error(
    http: httpx.Client, configs: Path
) -> None:
    serve_config(http, configs, "typo", "{Items: {ids: [1]}}", "[]", "[item, titel]")
    r = http.post("/pipelines/typo/execute", json={})
    assert r.status_code == 500  # the pipeline's config is wrong, not the request
    error = r.json()["error"]
    assert error["type"] == "PipelineDefinitionError"
    assert "pipeline 'typo': its return_cols asks for 'titel'" in error["message"]
    assert "problems" not in r.json()


def test_context_problems_are_422(http: httpx.Client, configs: Path) -> None:
    write(
        configs / "mine.yaml",
        "name: mine\nitem_type: item\nincludes: [UserAsItem]\nsteps: [{Head: {n: 1}}]\n",
    )
    wait_for(lambda: version_of(http, "mine"))
    assert http.get("/pipelines/mine").json()["context"] == {
        "required": ["user_id"],
        "optional": [],
    }
    r = http.post("/pipelines/mine/execute", json={})
    assert r.status_code == 422
    assert r.json()["problems"] == [
        {"parameter": "user_id", "in": "body", "message": "is required by UserAsItem()"}
    ]
    assert http.post("/pipelines/mine/execute", json={"user_id": 42}).json()["item"] == [42]
    r = http.post("/pipelines/top/execute", content=b"[1]")
    assert r.status_code == 422 and "JSON object" in r.json()["problems"][0]["message"]
    r = http.post("/pipelines/top/execute", json={"debug": True})
    assert r.status_code == 422 and r.json()["problems"][0]["parameter"] == "debug"


def test_declared_context_is_checked_before_running_and_shown(
    http: httpx.Client, configs: Path
) -> None:
    write(
        configs / "typed.yaml",
        "name: typed\nitem_type: item\ncontext: {user_id: int, n: {type: int, default: 2}}\n"
        "includes: [UserItems]\n",
    )
    wait_for(lambda: version_of(http, "typed"))
    assert http.get("/pipelines/typed").json()["context"] == {
        "required": ["user_id"],
        "optional": ["n"],
        "declared": {
            "user_id": {"type": "int", "required": True},
            "n": {"type": "int", "required": False, "default": 2},
        },
    }
    r = http.post("/pipelines/typed/execute", json={"user_id": "abc"})
    assert r.status_code == 422  # the caller's input, not a failing source (503)
    (problem,) = r.json()["problems"]
    assert problem["parameter"] == "user_id" and problem["in"] == "body"
    assert problem["input"] == "abc" and "valid integer" in problem["message"]
    assert r.json()["hint"] == "pipeline 'typed' takes: user_id (int, required), n (int, default 2)"
    assert http.post("/pipelines/typed/execute", json={"user_id": "5"}).json()["item"] == [5, 6]


def test_unknown_pipeline_is_404_with_suggestions(http: httpx.Client) -> None:
    r = http.post("/pipelines/tpo/execute", json={})
    assert r.status_code == 404
    assert "did you mean 'top'" in r.json()["error"]
    assert http.get("/pipelines/tpo").status_code == 404


def test_new_changed_and_removed_files_are_picked_up(http: httpx.Client, configs: Path) -> None:
    first = version_of(http, "top")
    write(configs / "more.yaml", config("more", [7, 8, 9], head=1))
    wait_for(lambda: version_of(http, "more"))
    assert http.post("/pipelines/more/execute", json={}).json()["item"] == [9]

    write(configs / "top.yaml", config("top", [1, 2, 3, 4], head=3))
    wait_for(lambda: version_of(http, "top") not in (None, first))
    assert http.post("/pipelines/top/execute", json={}).json()["item"] == [4, 3, 2]

    (configs / "more.yaml").unlink()
    wait_for(lambda: http.get("/pipelines/more").status_code == 404)
    assert [p["name"] for p in http.get("/pipelines").json()["pipelines"]] == ["top"]


def test_bad_new_version_is_rejected_and_last_good_keeps_serving(
    http: httpx.Client, configs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = version_of(http, "top")
    broken = config("top", [1, 2, 3, 4], head=2).replace("Head:\n    n: 2", "Head:\n    n: many")
    assert "n: many" in broken
    write(configs / "top.yaml", broken)
    detail = wait_for(lambda: http.get("/pipelines/top").json()["error"])
    assert "steps[1] (Head).n" in detail["message"] and "'many'" in detail["message"]
    assert detail["serving_instead"] == good
    shown = http.get("/pipelines/top").json()
    assert shown["status"] == "rejected" and shown["serving"] and shown["version"] == good
    # the last good version still answers
    assert http.post("/pipelines/top/execute", json={}).json()["item"] == [4, 3]
    assert http.get("/readyz").json()["rejected"] == ["top"]
    assert any("rejected new version" in r.getMessage() for r in caplog.records)
    # fixing the file clears the error
    write(configs / "top.yaml", config("top", [1, 2, 3, 4], head=1))
    wait_for(lambda: http.get("/pipelines/top").json()["status"] == "ok")
    assert http.post("/pipelines/top/execute", json={}).json()["item"] == [4]


def test_a_config_that_never_was_valid_is_shown_not_served(
    http: httpx.Client, configs: Path
) -> None:
    write(configs / "typo.yaml", "name: typo\nitem_type: item\nincludes:\n  - Itemz: {ids: [1]}\n")
    wait_for(lambda: http.get("/pipelines/typo").status_code == 200)
    detail = http.get("/pipelines/typo").json()
    assert detail["status"] == "invalid" and not detail["serving"]
    assert "unknown operator" in detail["error"]["message"].lower()
    r = http.post("/pipelines/typo/execute", json={})
    assert r.status_code == 404 and "no valid version" in r.json()["error"]
    write(configs / "broken.yaml", "name: [unclosed\n")
    wait_for(lambda: http.get("/pipelines/broken").status_code == 200)
    assert "invalid YAML" in http.get("/pipelines/broken").json()["error"]["message"]


def test_two_files_with_one_name_reject_the_second(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(config("same", [1]))
    (tmp_path / "b.yaml").write_text(config("same", [2]))
    catalog = PipelineCatalog(tmp_path)
    changes = catalog.scan()
    assert any("already served from a.yaml" in c for c in changes)
    entry = catalog.entry("same")
    assert entry.source is not None and entry.source.name == "a.yaml"
    assert entry.pipeline is not None
    # shown where people look (GET /pipelines/same), not only in the logs
    assert entry.status == "rejected" and entry.error is not None
    assert "already served from a.yaml" in entry.error
    assert entry.error_source is not None and entry.error_source.name == "b.yaml"
    (tmp_path / "b.yaml").unlink()  # the competing file gone: nothing to report any more
    catalog.scan()
    assert catalog.entry("same").status == "ok"


def test_catalog_rescan_skips_unchanged_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(config("a", [1]))
    clock = iter(range(100))
    catalog = PipelineCatalog(tmp_path, clock=lambda: float(next(clock)))
    assert catalog.scan() == ["loaded a from a.yaml"]
    assert catalog.scan() == []
    time.sleep(0.01)
    (tmp_path / "a.yaml").write_text(config("a", [1]))  # same bytes: nothing to reload
    assert catalog.scan() == []
    assert catalog.entry("a").loaded_at == 0.0


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        flight.App("x", configs=tmp_path / "nope")


def checked_config(name: str, *, sort_by: str, schema: bool, canary: bool) -> str:
    body: dict[str, Any] = {
        "name": name,
        "item_type": "item",
        "imports": ["flight_test_ops"],
        "includes": [{"Items": {"ids": [1, 2, 3], "column": "score", "values": [1.0, 3.0, 2.0]}}],
        "steps": [
            {"WeightedScore": {"weights": {"score": 1.0}, "output": "total"}},
            {"Sort": {"by": sort_by, "desc": True}},
        ],
    }
    if schema:
        body["schema"] = {"score": "float"}
    if canary:
        body["canary"] = {}
    return yaml.safe_dump(body)


def test_a_schema_catches_a_misspelt_column_before_anything_serves(tmp_path: Path) -> None:
    from flight import ConfigError, Pipeline

    good = yaml.safe_load(checked_config("ok", sort_by="total", schema=True, canary=False))
    assert Pipeline.from_config(good).schema == (("score", "float"),)
    assert Pipeline.from_config(Pipeline.from_config(good).to_config()) == Pipeline.from_config(
        good
    )
    typo = yaml.safe_load(checked_config("typo", sort_by="scroe", schema=True, canary=False))
    with pytest.raises(ConfigError, match=r"column 'scroe' is neither in the schema.*'score'\?"):
        Pipeline.from_config(typo)
    # without a schema it cannot be told before running: the canary is what catches it
    assert Pipeline.from_config(
        yaml.safe_load(checked_config("typo", sort_by="scroe", schema=False, canary=False))
    )


def test_hot_reload_runs_the_canary_and_keeps_the_good_version(
    configs: Path, http: httpx.Client
) -> None:
    """Once, `Sort: {by: scroe}` passed validation, replaced the good version and made every
    request a 500. With a canary context the new version runs once first, and is refused."""
    write(
        configs / "checked.yaml",
        checked_config("checked", sort_by="total", schema=False, canary=True),
    )
    wait_for(lambda: http.get("/pipelines/checked").status_code == 200)
    good = http.get("/pipelines/checked").json()["version"]
    write(
        configs / "checked.yaml",
        checked_config("checked", sort_by="scroe", schema=False, canary=True),
    )
    wait_for(lambda: http.get("/pipelines/checked").json()["status"] == "rejected")
    detail = http.get("/pipelines/checked").json()
    assert "the canary run with {} failed" in detail["error"]["message"]
    assert "scroe" in detail["error"]["message"]
    assert detail["version"] == good  # the last good version keeps serving
    answer = http.post("/pipelines/checked/execute", json={})
    assert answer.status_code == 200 and answer.json()["item"] == [2, 3, 1]


def test_a_context_key_the_config_does_not_declare_is_a_422(
    configs: Path, http: httpx.Client
) -> None:
    body = yaml.safe_load(checked_config("typed", sort_by="total", schema=False, canary=False))
    body["context"] = {"client_id": "int"}
    write(configs / "typed.yaml", yaml.safe_dump(body))
    wait_for(lambda: http.get("/pipelines/typed").status_code == 200)
    answer = http.post("/pipelines/typed/execute", json={"clinet_id": 8})
    assert answer.status_code == 422, answer.text
    assert "clinet_id" in answer.text and "did you mean 'client_id'" in answer.text


def test_flight_validate_runs_the_canary(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(checked_config("bad", sort_by="scroe", schema=False, canary=True))
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "support")}
    done = subprocess.run(
        [sys.executable, "-c", "from flight.cli import main; main()", "validate", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**__import__("os").environ, **env},
    )  # fmt: skip
    assert done.returncode == 1 and "the canary run with {} failed" in done.stderr
