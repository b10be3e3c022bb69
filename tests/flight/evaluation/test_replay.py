"""Replay of served traffic: a served app logs a sample of its pipeline runs (no secrets),
and `flight replay` reruns them through configs and compares with what was served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flight_test_ops  # UserItems, registered before each test's scope
import httpx
import pytest
import yaml
from serving_helpers import ServerThread

import flight
from flight.evaluation.replay import rbo

SUPPORT = Path(flight_test_ops.__file__).parent  # for `flight` run as a subprocess


def config(name: str, head: int) -> dict[str, Any]:
    return {
        "name": name,
        "item_type": "item",
        "imports": ["flight_test_ops"],
        "context": {
            "user_id": "int",
            "n": {"type": "int", "default": 5},
            "api_token": {"type": "str", "default": ""},
        },
        "includes": [{"UserItems": {}}],
        "steps": [{"Head": {"n": head}}],
    }


@pytest.fixture
def served_log(tmp_path: Path) -> Path:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "recs.yaml").write_text(yaml.safe_dump(config("recs", 5)))
    log = tmp_path / "requests.jsonl"
    app = flight.App("replayed", configs=configs, request_log=log, request_log_rate=1.0, env={})
    server = ServerThread(app).start()
    try:
        for user in range(1, 21):
            answer = httpx.post(
                f"{server.url}/pipelines/recs/execute",
                json={"user_id": user, "api_token": "hunter2"},
            )
            assert answer.status_code == 200, answer.text
    finally:
        server.stop()
        flight.remove_hook(app.request_log)  # type: ignore[arg-type]
    return log


def test_served_runs_are_logged_without_secrets(served_log: Path) -> None:
    records = [json.loads(line) for line in served_log.read_text().splitlines()]
    assert len(records) == 20
    first = records[0]
    assert first["pipeline"] == "recs" and first["version"]  # the config's digest
    assert first["context"] == {"user_id": 1, "n": 5}  # api_token never written
    assert first["items"] == [1, 2, 3, 4, 5] and first["latency_ms"] >= 0
    assert "hunter2" not in served_log.read_text()


def test_rbo_weights_the_top_of_the_list() -> None:
    assert rbo([1, 2, 3], [1, 2, 3], 3) == pytest.approx(1.0)
    assert rbo([1, 2, 3], [4, 5, 6], 3) == 0.0
    assert rbo([1, 2, 3], [1, 9, 9], 3) > rbo([1, 2, 3], [9, 9, 1], 3) > 0


def flight_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SUPPORT)}
    return subprocess.run(
        [sys.executable, "-c", "from flight.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_flight_replay_compares_configs_with_what_was_served(
    served_log: Path, tmp_path: Path
) -> None:
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(config("same", 5)))
    shorter = tmp_path / "shorter.yaml"
    shorter.write_text(yaml.safe_dump(config("shorter", 2)))  # two items of the five
    out = tmp_path / "out"
    done = flight_cli(
        "replay", str(served_log), "--against", str(same), "--against", str(shorter),
        "--k", "5", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "same" in done.stdout and "shorter" in done.stdout and "overlap@5" in done.stdout
    figures = json.loads((out / "replay.json").read_text())
    assert figures["_settings"] == {"k": 5, "requests": 20}
    assert figures["same"]["overlap@5"] == 1.0 and figures["same"]["rbo@5"] == 1.0
    assert figures["shorter"]["overlap@5"] == pytest.approx(0.4)
    assert figures["shorter"]["top1_changed"] == 0.0  # the first item is still the same
    assert (out / "replay.html").read_text().count("<tr>") == 3


def test_flight_replay_bad_input_exits_2(tmp_path: Path) -> None:
    missing = flight_cli("replay", str(tmp_path / "none.jsonl"), "--against", "x.yaml")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.jsonl"
    junk.write_text("not json\n")
    bad = flight_cli("replay", str(junk), "--against", "x.yaml")
    assert bad.returncode == 2 and "junk.jsonl:1: not a JSON line" in bad.stderr
