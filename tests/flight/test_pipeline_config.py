"""Pipelines from YAML/JSON config: round trips and validation errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from flight_test_ops import Items, KeepEven

import flight.operators as fo
from flight import ConfigError, ExecuteError, Pipeline
from flight.config import dump_config

CONFIG: dict[str, Any] = {
    "name": "recs",
    "item_type": "item",
    "description": "test pipeline",
    "imports": ["flight_test_ops"],
    "defaults": {"timeout": 1.5, "retries": 2},
    "includes": [
        {"Items": {"ids": [1, 2, 3, 4]}},
        {"op": "Items", "args": {"ids": [9]}, "policy": {"optional": True, "timeout": 0.2}},
    ],
    "excludes": [{"Items": {"ids": [3]}}],
    "steps": [
        {"KeepEven": {}},
        {"Sort": {"by": "item", "desc": True}},
        {"Head": {"n": 5}},
    ],
    "return_cols": ["item"],
}


def test_config_builds_the_same_pipeline_as_python() -> None:
    built = Pipeline.from_config(CONFIG)
    by_hand = Pipeline(
        "recs",
        "item",
        description="test pipeline",
        source_defaults={"timeout": 1.5, "retries": 2},
        return_cols=["item"],
        imports=["flight_test_ops"],
    ).initialize(
        includes=[Items([1, 2, 3, 4]), Items([9]).with_policy(optional=True, timeout=0.2)],
        excludes=[Items([3])],
    ) | [KeepEven(), fo.Sort("item", desc=True), fo.Head(5)]
    assert built == by_hand


def test_to_config_round_trips() -> None:
    pipeline = Pipeline.from_config(CONFIG)
    assert pipeline.to_config() == CONFIG
    assert Pipeline.from_config(pipeline.to_config()) == pipeline


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    pipeline = Pipeline.from_config(CONFIG)
    path = tmp_path / f"recs{suffix}"
    dump_config(pipeline, path)
    loaded = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
    assert loaded == CONFIG
    assert Pipeline.from_config(path) == pipeline


DECLARED: dict[str, Any] = {
    "name": "mine",
    "item_type": "item",
    "imports": ["flight_test_ops"],
    "context": {
        "user_id": "int",
        "n": {"type": "int", "default": 2},
        "tags": {"type": "list[str]", "default": ["a"]},
    },
    "includes": [{"UserItems": {}}],
}


async def test_declared_context_round_trips_converts_and_fills_defaults() -> None:
    pipeline = Pipeline.from_config(DECLARED)
    assert pipeline.to_config() == DECLARED
    assert Pipeline.from_config(pipeline.to_config()) == pipeline
    result = await pipeline.execute(user_id="7")  # "7" is an int; n defaults to 2
    assert result.items["item"].tolist() == [7, 8]
    assert (await pipeline.execute(user_id=7, n=3)).items["item"].tolist() == [7, 8, 9]


async def test_declared_context_rejects_a_wrong_type_before_anything_runs() -> None:
    pipeline = Pipeline.from_config(DECLARED)
    with pytest.raises(ExecuteError) as info:
        await pipeline.execute(user_id="abc", tags="x")
    assert str(info.value).startswith(
        "pipeline 'mine': context 'user_id': Input should be a valid integer"
    )
    assert "It takes: user_id (int, required), n (int, default 2)" in str(info.value)
    assert [(k, v) for k, _, v in info.value.problems] == [("user_id", "abc"), ("tags", "x")]
    with pytest.raises(ExecuteError, match="context 'user_id': is required"):
        await pipeline.execute()


async def test_a_context_key_the_pipeline_does_not_declare_is_refused() -> None:
    """A typo would otherwise pass silently: execute(m=5) against a declared n."""
    pipeline = Pipeline.from_config(DECLARED)
    with pytest.raises(ExecuteError, match=r"'m': is not in the declared context.*takes: user_id"):
        await pipeline.execute(user_id=7, m=5)
    with pytest.raises(ExecuteError, match=r"'usr_id': .*; did you mean 'user_id'\?"):
        await pipeline.execute(user_id=7, usr_id=8)


def test_config_context_problems_are_reported() -> None:
    error = errors_for(
        {**DECLARED, "context": {"user_id": "integer", "n": {"type": "int", "default": "ten"}}}
    )
    assert "context.user_id: unknown type 'integer'; use one of int, float, str" in str(error)
    assert "context.n.default: Input should be a valid integer" in str(error)
    error = errors_for({**DECLARED, "context": {"n": "int"}})
    assert "UserItems() needs context 'user_id', which its context does not declare" in str(error)


def test_python_pipeline_to_config_lists_operator_modules_as_imports() -> None:
    p = Pipeline("p", "item").initialize(includes=[Items([1])]) | fo.Head(1)
    config = p.to_config()
    assert config["imports"] == ["flight_test_ops"]
    assert config["steps"] == [{"Head": {"n": 1}}]


async def test_config_pipeline_runs() -> None:
    result = await Pipeline.from_config(CONFIG).execute()
    assert result.items["item"].tolist() == [4, 2]


def errors_for(config: dict[str, Any], tmp_path: Path | None = None) -> ConfigError:
    source: Any = config
    if tmp_path is not None:
        source = tmp_path / "bad.yaml"
        source.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(source)
    return info.value


def with_step(step: Any) -> dict[str, Any]:
    return {**CONFIG, "steps": [step]}


def test_config_unknown_operator_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    error = errors_for(with_step({"Sortt": {"by": "item"}}), tmp_path)
    assert str(error).startswith(f"{tmp_path / 'bad.yaml'}: pipeline 'recs': steps[0]: ")
    assert "unknown operator 'Sortt'; did you mean 'Sort'?" in str(error)


def test_config_missing_argument_is_rejected() -> None:
    error = errors_for(with_step({"Head": {}}))
    assert str(error) == "<config>: pipeline 'recs': steps[0] (Head).n: Field required"


def test_config_wrongly_typed_argument_is_rejected() -> None:
    error = errors_for(with_step({"Sort": {"by": "item", "desc": "sometimes"}}))
    assert "steps[0] (Sort).desc: Input should be a valid boolean" in str(error)
    assert "'sometimes'" in str(error)


def test_config_unknown_argument_is_rejected() -> None:
    error = errors_for(with_step({"Head": {"n": 1, "m": 2}}))
    assert "steps[0] (Head).m: Extra inputs are not permitted" in str(error)


def test_config_unknown_top_level_key_is_rejected() -> None:
    error = errors_for({**CONFIG, "stepz": []})
    assert "pipeline 'recs': stepz: unknown key; did you mean 'steps'? (known keys: name" in str(
        error
    )


def test_config_key_typo_is_the_only_problem_reported(tmp_path: Path) -> None:
    # the operators come from a module the config imports: the typo must not make them unknown
    (tmp_path / "typo_ops.py").write_text(
        "import flight.operators as fo\n\n"
        "class TypoSource(fo.SourceOperator):\n"
        "    async def __call__(self, **ctx):\n"
        "        return fo.Source([1])\n"
    )
    config = {
        "name": "typo",
        "item_type": "item",
        "imports": ["typo_ops.py"],
        "includes": [{"TypoSource": {}}],
        "step": [{"Head": {"n": 1}}],
    }
    error = errors_for(config, tmp_path)
    assert str(error) == (
        f"{tmp_path / 'bad.yaml'}: pipeline 'typo': step: unknown key; did you mean 'steps'? "
        f"(known keys: {', '.join(config_keys())})"
    )


def config_keys() -> list[str]:
    from flight.config import PipelineConfig

    return list(PipelineConfig.model_fields)


def test_unknown_operator_without_a_close_name_reads_as_sentences() -> None:
    error = errors_for(with_step({"Zzyzx": {}}))
    assert "steps[0]: unknown operator 'Zzyzx'. Define or import it first" in str(error)


def test_config_source_among_steps_and_filter_among_includes_are_rejected() -> None:
    error = errors_for(
        {**CONFIG, "includes": [{"KeepEven": {}}], "steps": [{"Items": {"ids": []}}]}
    )
    assert error.problems == [
        "includes[0] (KeepEven): includes take source operators; KeepEven is a filter operator",
        "steps[0] (Items): Items is a source; put it under includes or excludes",
    ]
    assert str(error).startswith("<config>: pipeline 'recs': 2 problems:\n  - includes[0]")


def test_config_policy_only_for_sources_and_validated() -> None:
    error = errors_for(with_step({"op": "Head", "args": {"n": 1}, "policy": {"retries": 1}}))
    assert "steps[0] (Head).policy: only sources have a policy" in str(error)
    bad_policy = {
        **CONFIG,
        "includes": [{"op": "Items", "args": {"ids": [1]}, "policy": {"retries": -1}}],
    }
    assert "includes[0] (Items).policy.retries: Input should be greater than or equal to 0" in str(
        errors_for(bad_policy)
    )


def test_config_missing_name_and_includes_are_reported_together() -> None:
    error = errors_for({"item_type": "item"})
    assert error.problems == ["name: Field required", "includes: Field required"]


def test_config_bad_import_is_reported() -> None:
    error = errors_for({**CONFIG, "imports": ["no_such_module_xyz"]})
    assert "imports[0]: cannot import 'no_such_module_xyz'" in str(error)


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nitem_type: item\nincludes: [\n  - Items: {ids: [1]\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+:\d+: invalid YAML"):
        Pipeline.from_config(path)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        Pipeline.from_config(tmp_path / "nope.yaml")


CALLS: list[str] = []


class CountingSource(fo.SourceOperator):
    async def __call__(self, **ctx: Any) -> fo.Source:
        CALLS.append("called")
        return fo.Source([1])


def test_bad_config_never_half_runs() -> None:
    config = {**CONFIG, "includes": [{"CountingSource": {}}], "steps": [{"Head": {"n": "x"}}]}
    with pytest.raises(ConfigError):
        Pipeline.from_config(config)
    assert CALLS == []


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"timeout": -1}, "greater than 0"),
        ({"timeout": 0}, "greater than 0"),
        ({"retries": 1000}, "less than or equal to 10"),
        ({"backoff": -0.5}, "greater than or equal to 0"),
    ],
)
def test_impossible_source_policies_are_refused(policy: dict[str, Any], problem: str) -> None:
    bad = {**DECLARED, "defaults": policy}
    with pytest.raises(ConfigError, match=problem):
        Pipeline.from_config(bad)


def test_an_operator_added_to_an_imported_module_says_restart(tmp_path: Path) -> None:
    import os
    import time

    module = tmp_path / "late_ops_module.py"
    module.write_text(
        "import flight.operators as fo\n\n"
        "class LateA(fo.SourceOperator):\n"
        "    async def __call__(self, **ctx):\n"
        "        return fo.Source([1])\n"
    )
    first = {
        "name": "a",
        "item_type": "item",
        "imports": [str(module)],
        "includes": [{"LateA": {}}],
    }
    assert Pipeline.from_config(first).name == "a"
    module.write_text(module.read_text().replace("LateA", "LateB"))
    later = time.time() + 5
    os.utime(module, (later, later))
    second = {**first, "includes": [{"LateB": {}}]}
    with pytest.raises(ConfigError, match=r"unknown operator 'LateB'") as info:
        Pipeline.from_config(second)
    assert "late_ops_module.py changed after this process imported it" in str(info.value)
    assert "restart it" in str(info.value)
