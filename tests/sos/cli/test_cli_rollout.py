"""``sos rollout``: start, follow (--wait: the exit code says how it ended), status, stop,
and options people mistype, against a real server (fake backend, counted requests)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sos_cli import cli_runner
from typer.testing import CliRunner, Result

from sos.cli import _load_commands, app
from sos.runtime.fake import FakeBackend

if TYPE_CHECKING:
    from sos_server import RunningServer

_load_commands()


@pytest.fixture
def shop(rollout_shop: RunningServer) -> RunningServer:
    return rollout_shop


@pytest.fixture
def sos(shop: RunningServer, tmp_path: Path) -> CliRunner:
    return cli_runner(shop.url, shop.admin_token, tmp_path)


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def test_a_rollout_followed_to_success_exits_0(sos: CliRunner) -> None:
    done = run(sos, "rollout", "shop", "--to", "2", "--steps", "50,100", "--every", "1s",
               "--min-requests", "0", "--wait")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "rollout of shop to revision 00002: succeeded at 100%" in done.stdout
    assert "traffic: 00002=100" in done.stdout
    status = run(sos, "rollout", "shop", "--status")
    assert "reason: revision 00002 has all the traffic: every step passed" in status.stdout


def test_a_rollback_exits_1_with_the_figures_that_tripped_it(
    sos: CliRunner, shop: RunningServer
) -> None:
    backend = shop.state.backend
    assert isinstance(backend, FakeBackend)
    burst = threading.Timer(0.5, backend.serve, args=("shop-00002", 50), kwargs={"errors": 20})
    burst.start()
    try:
        rolled = run(sos, "rollout", "shop", "--to", "2", "--every", "10m",
                     "--max-error-rate", "1%", "--max-p99", "300ms", "--wait")  # fmt: skip
    finally:
        burst.cancel()
    assert rolled.exit_code == 1, rolled.output
    assert "the rollout rolled back: error rate 40.0% > 1.0% (20 of 50 requests)" in rolled.stderr
    assert "traffic: 00001=100" in rolled.stdout
    again = run(sos, "rollout", "shop", "--stop")
    assert again.exit_code == 1 and "has no rollout running (the last one rolled back)" in (
        again.stderr
    )


def test_start_then_stop_leaves_the_split(sos: CliRunner) -> None:
    started = run(sos, "rollout", "shop", "--to", "2", "--every", "10m")
    assert started.exit_code == 0, started.output
    assert "running at 10% (step 1 of 3: 10%,50%,100%, every 600s)" in started.stdout
    stopped = run(sos, "rollout", "shop", "--stop")
    assert stopped.exit_code == 0, stopped.output
    assert "stopped at 10%" in stopped.stdout and "traffic: 00002=10 00001=90" in stopped.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "2", "--every", "soon"], "the interval 'soon' is not understood"),
        (["--to", "2", "--steps", "50,10,100"], "steps must rise"),
        (["--to", "2", "--steps", "10,50"], "the last step must be 100"),
        (["--to", "2", "--max-error-rate", "lots"], "the rate 'lots' is not understood"),
        (["--status", "--stop"], "say one of --to REV (start), --status or --stop"),
        ([], "say one of --to REV"),
    ],
)
def test_mistyped_options_exit_2_and_say_what(
    sos: CliRunner, args: list[str], message: str
) -> None:
    result = run(sos, "rollout", "shop", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    status = run(sos, "rollout", "shop", "--status")
    assert status.exit_code == 1 and "has had no rollout" in status.stderr  # nothing started


def test_sticky_splits_and_shadows_from_the_command_line(sos: CliRunner) -> None:
    sticky = run(sos, "traffic", "shop", "1=90", "2=10", "--split-by", "header:X-User-Id")
    assert sticky.exit_code == 0, sticky.output
    assert "sticky: header:X-User-Id keeps each key on one revision" in sticky.stdout
    kept = run(sos, "traffic", "shop", "1=80", "2=20")  # a new split stays sticky
    assert "sticky: header:X-User-Id" in kept.stdout
    mirrored = run(sos, "shadow", "shop", "3=50")
    assert mirrored.exit_code == 1 and "has no revision shop-00003" in mirrored.stderr
    run(sos, "traffic", "shop", "1=100")
    mirrored = run(sos, "shadow", "shop", "2=50")
    assert mirrored.exit_code == 0, mirrored.output
    assert "shadow: 00002 gets a copy of 50% of the requests" in mirrored.stdout
    report = run(sos, "shadow", "report", "shop")
    assert report.exit_code == 0 and "the fake backend does not mirror requests" in report.stdout
    plain = run(sos, "traffic", "shop", "1=100", "--split-by", "none")
    assert "sticky:" not in plain.stdout and "shadow: 00002" in plain.stdout
    off = run(sos, "shadow", "shop", "--off")
    assert off.exit_code == 0 and "no shadow; requests are no longer mirrored" in off.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["traffic", "shop", "1=100", "--split-by", "ip"], "must be header:NAME, query:NAME"),
        (["traffic", "shop", "--split-by", "header:X"], "--split-by goes with the routes"),
        (["shadow", "shop", "2"], "'2' is not a shadow: write REVISION=PERCENT"),
        (["shadow", "shop"], "say what to mirror"),
    ],
)
def test_sticky_and_shadow_mistakes_exit_2(sos: CliRunner, args: list[str], message: str) -> None:
    result = run(sos, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
