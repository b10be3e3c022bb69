"""What each worker process of ``flight serve --workers N`` serves: the same app as the
parent checked, built again in the worker from the environment the parent set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flight import tracing
from flight.logs import configure_json_logging

__all__ = ["describe", "make_app"]


def describe(
    target: str | None, app_dir: Path | None, configs: Path | None, budget_ms: float | None
) -> dict[str, str]:
    """The environment that lets :func:`make_app` build the app again."""
    env = {"FLIGHT_SERVE_TARGET": target or "", "FLIGHT_SERVE_CONFIGS": ""}
    env["FLIGHT_SERVE_APP_DIR"] = str(Path(app_dir or ".").resolve())
    if configs is not None:
        env["FLIGHT_SERVE_CONFIGS"] = str(configs.resolve())
    env["FLIGHT_SERVE_BUDGET_MS"] = "" if budget_ms is None else str(budget_ms)
    return env


def make_app() -> Any:
    """Called by uvicorn in each worker process (``factory=True``)."""
    from flight.serving import App
    from flight.serving.server import load_target

    configure_json_logging(os.environ.get("FLIGHT_LOG_LEVEL", "info").upper())
    tracing.configure_tracing_once()
    target = os.environ.get("FLIGHT_SERVE_TARGET", "")
    if target:
        return load_target(target, os.environ.get("FLIGHT_SERVE_APP_DIR") or None)
    configs = Path(os.environ["FLIGHT_SERVE_CONFIGS"])
    budget = os.environ.get("FLIGHT_SERVE_BUDGET_MS", "")
    return App(
        configs.name or "flight", configs=configs, budget_ms=float(budget) if budget else None
    )
