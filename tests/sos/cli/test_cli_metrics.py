"""``sos metrics``: the per-revision table, --json, --watch, and its errors, against a real
server whose fake backend answers a known load (``tests/support/sos_metrics_load.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sos_metrics_load import ERRORS, REQUESTS, Loaded, Silent, deploy_shop, start_loaded
from sos_server import RunningServer
from typer.testing import CliRunner, Result

from sos.cli import _load_commands, app
from sos.cli import metrics as metrics_cli
from sos.models import ServiceMetrics, ServiceSpec

_load_commands()


def runner(server: RunningServer, tmp_path: Path) -> CliRunner:
    return CliRunner(
        env={
            "SOS_URL": server.url,
            "SOS_TOKEN": server.admin_token,
            "SOS_CONFIG": str(tmp_path / "config.json"),
            "COLUMNS": "120",
        }
    )


def run(sos: CliRunner, *args: str) -> Result:
    return sos.invoke(app, list(args))


@pytest.fixture
def loaded(
    sos_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> RunningServer:
    return start_loaded(sos_server, monkeypatch)


def test_metrics_table_has_a_row_per_revision_with_rates_latency_and_instances(
    loaded: RunningServer, tmp_path: Path
) -> None:
    result = run(runner(loaded, tmp_path), "metrics", "shop", "--window", "1m")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("shop  last 1m, sampled every 0.2 s")
    header = lines[1].split()
    assert header == [
        "REVISION", "TRAFFIC", "REQ/S", "P50", "P99", "ERR/S",
        "REQUESTS", "ERRORS", "RUNNING", "READY",
    ]  # fmt: skip
    newest, oldest = lines[2].split(), lines[3].split()
    # revision 2: 10% of traffic, quiet now, 55/99.1 ms, 50 requests, 5 errors, 2 running, 1 ready
    assert newest == ["00002", "10%", "0", "55.0", "ms", "99.1", "ms", "0", "50", "5", "2", "1"]
    assert oldest[:2] == ["00001", "90%"] and oldest[-4:] == ["0", "0", "1", "1"]
    assert "the last 1m" in lines[4]


def test_metrics_of_one_revision_as_json_is_the_api_answer(
    loaded: RunningServer, tmp_path: Path
) -> None:
    result = run(runner(loaded, tmp_path), "metrics", "shop", "-r", "2", "--json")
    assert result.exit_code == 0, result.output
    data = ServiceMetrics.model_validate_json(result.stdout)
    (two,) = data.revisions
    assert (two.revision, two.requests, two.errors) == ("shop-00002", REQUESTS, ERRORS)
    assert data.window_seconds == 300


def test_metrics_watch_prints_one_json_object_per_refresh_until_count(
    loaded: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(metrics_cli, "sleep", slept.append)
    result = run(
        runner(loaded, tmp_path),
        "metrics", "shop", "--watch", "--json", "--count", "3", "--interval", "1.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == 3 and slept == [1.5, 1.5]
    assert answers[0]["now"] <= answers[1]["now"] <= answers[2]["now"]
    assert {r["revision"] for r in answers[2]["revisions"]} == {"shop-00001", "shop-00002"}


def test_metrics_watch_redraws_tables_one_after_the_other_when_piped(
    loaded: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(metrics_cli, "sleep", slept.append)
    result = run(runner(loaded, tmp_path), "metrics", "shop", "--watch", "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("REVISION TRAFFIC") == 2
    assert slept == [2.0]  # the server samples every 0.2 s; the table waits at least 2 s


def test_metrics_of_a_backend_without_metrics_says_where_they_are_and_fails(
    sos_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = sos_server(backend=Silent())
    deploy_shop(server)
    result = run(runner(server, tmp_path), "metrics", "shop")
    assert result.exit_code == 1
    assert "no metrics for shop: the knative backend does not report" in result.stderr
    assert "Prometheus" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--window", "2h"], "window '2h' must be between 10s and 15m"),
        (["--revision", "9"], "has no revision 'shop-00009'"),
        (["--revision", "x-1"], "is not a revision of 'shop'"),
    ],
)
def test_metrics_bad_arguments_are_one_clear_line_and_exit_1(
    loaded: RunningServer, tmp_path: Path, args: list[str], says: str
) -> None:
    result = run(runner(loaded, tmp_path), "metrics", "shop", *args)
    assert result.exit_code == 1
    assert says in result.stderr and "Traceback" not in result.output


def test_metrics_before_any_sample_says_so(
    sos_server: Callable[..., RunningServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOS_METRICS_INTERVAL", "60")  # the first round comes in a minute
    server = sos_server(backend=Loaded())
    with server.client() as admin:
        admin.apply(ServiceSpec(name="empty", team="recs"))
    result = run(runner(server, tmp_path), "metrics", "empty")
    assert result.exit_code == 0, result.output
    assert "No samples in the last 5m yet: the server samples every 60 s" in result.stdout
