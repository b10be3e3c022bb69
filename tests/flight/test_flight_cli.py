"""The `flight` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flight.cli import parse_context

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # flight_test_ops
CONFIG = {
    "name": "cli_demo",
    "item_type": "item",
    "imports": ["flight_test_ops"],
    "includes": [
        {"Items": {"ids": [5, 6, 7, 8], "column": "score", "values": [0.1, 0.4, 0.3, 0.2]}}
    ],
    "excludes": [{"Items": {"ids": [8]}}],
    "steps": [{"Sort": {"by": "score", "desc": True}}, {"Head": {"n": 2}}],
}


def flight_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SUPPORT)}
    return subprocess.run(
        [sys.executable, "-c", "from flight.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_run_prints_the_operator_log_and_items(config: Path) -> None:
    proc = flight_cli("run", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "Sort(by='score', desc=True) sorted 3 items in" in proc.stdout
    assert "Returning 2 items with mean(score)=0.35" in proc.stdout
    assert proc.stdout.index("│ 6 ") < proc.stdout.index("│ 7 ")


def test_run_json_with_debug(config: Path) -> None:
    proc = flight_cli("run", str(config), "--json", "--debug", "--return-cols", "item,score")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["result"]["item"] == [6, 7]
    assert payload["result"]["score"] == [0.4, 0.3]
    assert [e["name"] for e in payload["result"]["debug"]] == ["Items", "Items", "Sort", "Head"]
    assert [s["operator"] for s in payload["stats"]] == ["Items", "Items", "Sort", "Head"]
    assert "Head(n=2) filtered 3 items to 2 items" in proc.stderr


def test_run_with_context_and_structured_logs(tmp_path: Path) -> None:
    path = tmp_path / "ctx.yaml"
    path.write_text(
        yaml.safe_dump({**CONFIG, "steps": [{"Match": {"column": "item", "context": "want"}}]})
    )
    proc = flight_cli("run", str(path), "--context", "want=7", "--log-json", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"]["item"] == [7]
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    match = next(r for r in records if r.get("operator") == "Match")
    assert (match["n_in"], match["n_out"], match["args"]["context"]) == (3, 1, "want")


def test_invalid_config_exits_2_with_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "steps": [{"Head": {"n": "many"}}]}))
    for command in ("run", "validate"):
        proc = flight_cli(command, str(path))
        assert proc.returncode == 2
        assert (
            f"error: {path}: pipeline 'cli_demo': steps[0] (Head).n: "
            "Input should be a valid integer" in proc.stderr
        )


def test_missing_context_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "ctx.yaml"
    path.write_text(
        yaml.safe_dump({**CONFIG, "steps": [{"Match": {"column": "item", "context": "want"}}]})
    )
    proc = flight_cli("run", str(path))
    assert proc.returncode == 2
    assert "needs context 'want'" in proc.stderr


def test_validate_and_operators(config: Path) -> None:
    proc = flight_cli("validate", str(config))
    assert proc.returncode == 0
    assert "pipeline 'cli_demo' is valid: 1 includes, 1 excludes, 2 steps" in proc.stdout
    listing = flight_cli("operators").stdout
    assert "DiverseSample" in listing and "sampler" in listing


def test_parse_context_reads_yaml_scalars() -> None:
    assert parse_context(["user_id=1", "genre=Drama", "ok=true", "ids=[1, 2]", "x="]) == {
        "user_id": 1,
        "genre": "Drama",
        "ok": True,
        "ids": [1, 2],
        "x": "",
    }


def test_version_names_the_installed_distribution() -> None:
    from importlib import metadata

    proc = flight_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"flight {metadata.version('flight-sos')}"
