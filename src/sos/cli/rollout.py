"""``sos rollout NAME --to REV``: a rollout that stops itself; ``--status``, ``--stop``.

    sos rollout shop --to 2 --steps 10,50,100 --every 60s --max-error-rate 1% --max-p99 300ms
    sos rollout shop --status          # where it is, or how it ended and why
    sos rollout shop --stop            # stop where it is (the traffic stays)

With ``--wait`` the command follows the rollout to its end and its exit code says how it
ended: 0 succeeded, 1 rolled back or stopped (the reason on stderr).
"""

from __future__ import annotations

import re
import time

import pydantic
import typer

from sos.cli import app
from sos.cli._output import (
    EXIT_FAILURE,
    EXIT_USAGE,
    JsonOption,
    client,
    console,
    emit_json,
    fail,
    handle_errors,
)
from sos.cli.services import short
from sos.models import Rollout, RolloutStatus
from sos.traffic import describe

__all__ = ["parse_percent", "parse_seconds", "parse_steps"]

_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z%]*)\s*$")


def _amount(text: str, units: dict[str, float], what: str, example: str) -> float:
    match = _AMOUNT.match(text.lower())
    if not match or match[2] not in units:
        raise ValueError(f"{what} {text!r} is not understood: write it like {example}")
    return float(match[1]) * units[match[2]]


def parse_seconds(text: str) -> float:
    """``60``, ``60s``, ``2m``, ``1h`` -> seconds."""
    return _amount(text, {"": 1, "s": 1, "m": 60, "h": 3600}, "the interval", "60s or 2m")


def parse_ms(text: str) -> float:
    """``300``, ``300ms``, ``0.3s`` -> milliseconds."""
    return _amount(text, {"": 1, "ms": 1, "s": 1000}, "the latency", "300ms or 0.3s")


def parse_percent(text: str) -> float:
    """``1%`` or ``0.01`` -> 0.01."""
    if text.strip().endswith("%"):
        return _amount(text, {"%": 0.01}, "the rate", "1% or 0.01")
    return _amount(text, {"": 1}, "the rate", "1% or 0.01")


def parse_steps(text: str) -> list[int]:
    """``10,50,100`` -> [10, 50, 100]."""
    try:
        return [int(part.strip().rstrip("%")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"steps {text!r} are not understood: write them like 10,50,100") from None


def _say(rollout: RolloutStatus) -> None:
    spec = rollout.spec
    steps = ",".join(f"{p}%" for p in spec.steps)
    console.print(
        f"rollout of {rollout.service} to revision {short(spec.to)}: {rollout.state} "
        f"at {rollout.percent}% (step {rollout.step + 1} of {len(spec.steps)}: {steps}, "
        f"every {spec.step_seconds:g}s)"
    )
    gates = []
    if spec.max_error_rate is not None:
        gates.append(f"error rate <= {spec.max_error_rate * 100:g}%")
    if spec.max_p99_ms is not None:
        gates.append(f"p99 <= {spec.max_p99_ms:g} ms")
    console.print(
        f"gates: {', '.join(gates) or 'none'}; at least {spec.min_requests} requests a step"
    )
    if rollout.last is not None:
        last = rollout.last
        rate = f"{last.error_rate * 100:.1f}%" if last.error_rate is not None else "-"
        p99 = f"{last.p99_ms:.0f} ms" if last.p99_ms is not None else "-"
        console.print(
            f"this step so far: {last.requests} requests, {last.errors} errors ({rate}), p99 {p99}"
        )
    console.print(f"traffic: {describe(rollout.route)}")
    if rollout.reason:
        console.print(f"reason: {rollout.reason}")


@app.command("rollout")
@handle_errors
def rollout(
    name: str = typer.Argument(..., help="Service name."),
    to: str = typer.Option(None, "--to", help="The candidate revision (3, 00003 or its id)."),
    steps: str = typer.Option("10,50,100", help="Its percent at each step, ending at 100."),
    every: str = typer.Option("60s", "--every", help="How long each step lasts (60s, 5m)."),
    max_error_rate: str = typer.Option(
        None, "--max-error-rate", help="Roll back above this 5xx share (1% or 0.01)."
    ),
    max_p99: str = typer.Option(
        None, "--max-p99", help="Roll back above this p99 latency (300ms)."
    ),
    min_requests: int = typer.Option(
        20, "--min-requests", min=0, help="Requests a step needs before it can pass."
    ),
    min_overlap: float = typer.Option(
        None,
        "--min-overlap",
        help="Start only if the candidate, shadowed first, ranked at least this overlap@k "
        "with the primary (0 to 1).",
    ),
    status: bool = typer.Option(False, "--status", help="Show the rollout (and how it ended)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the running rollout where it is."),
    wait: bool = typer.Option(
        False, "--wait", help="Follow it to the end: exit 0 if it succeeded, 1 if not."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Start a rollout that stops itself, show one (--status) or stop it (--stop).

    The server gives the candidate each step's share for the interval, watches its error
    rate and p99 all along, and on a breach puts the route it started from back at once.
    """
    if sum((to is not None, status, stop)) != 1:
        raise fail("say one of --to REV (start), --status or --stop", EXIT_USAGE)
    with client() as c:
        if status:
            current = c.get_rollout(name)
        elif stop:
            current = c.stop_rollout(name)
        else:
            try:
                spec = Rollout(
                    to=to,
                    steps=parse_steps(steps),
                    step_seconds=parse_seconds(every),
                    max_error_rate=parse_percent(max_error_rate) if max_error_rate else None,
                    max_p99_ms=parse_ms(max_p99) if max_p99 else None,
                    min_requests=min_requests,
                    min_overlap=min_overlap,
                )
            except pydantic.ValidationError:
                raise  # handle_errors says which field, exit code 2
            except ValueError as exc:
                raise fail(str(exc), EXIT_USAGE) from None
            current = c.start_rollout(name, spec)
        while wait and current.state == "running":
            time.sleep(1)
            current = c.get_rollout(name)
    if as_json:
        emit_json(current)
    else:
        _say(current)
    if wait and current.state != "succeeded":
        raise fail(f"the rollout {current.state.replace('_', ' ')}: {current.reason}", EXIT_FAILURE)
