"""Observer hooks: how the engine reports what it does, to logs today and to tracing and
metrics tomorrow, without operators or the engine's core loop knowing who listens.

Subclass :class:`Hooks` and override what you need; register it for every pipeline with
:func:`add_hook` or for one engine with ``Engine(hooks=[...])``. The engine calls, in order::

    pipeline_start(run)
        operator_start(stats)  ...  operator_end(stats)      # sources concurrently, then steps
    pipeline_end(run, result)        # or pipeline_abort(run, exc) if the run was interrupted

``stats`` is the same :class:`OperatorStats` object at start and end (``n_out``,
``elapsed_ms``, ``status``, ``error``, ``retries``, ``timeouts`` are filled in at the end), so
a hook can keep per-operator state in ``run.state`` keyed by ``stats.key``. Hooks must be
cheap and must not raise: an exception in a hook is logged and otherwise ignored.

:class:`LoggingHook` is the built-in one: one structured ``logging`` record per operator on
the ``flight.engine`` logger (machine-readable fields in ``record.flight``), plus a summary.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from flight.operators.base import Operator
    from flight.result import Result

__all__ = [
    "Hooks",
    "LoggingHook",
    "OperatorStats",
    "RunInfo",
    "add_hook",
    "global_hooks",
    "remove_hook",
]

engine_logger = logging.getLogger("flight.engine")

Role = Literal["include", "exclude", "step"]
#: ``cut``: a source the request deadline stopped (see :mod:`flight.deadline`)
Status = Literal["running", "ok", "failed", "skipped", "cancelled", "cut", "not_run"]


@dataclasses.dataclass(slots=True)
class RunInfo:
    """One execution of a pipeline."""

    run_id: str
    pipeline: str
    item_type: str
    context: Mapping[str, Any]
    debug: bool
    #: scratch space for hooks (e.g. open spans), keyed as the hook likes
    state: dict[Any, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True, eq=False)
class OperatorStats:
    """What one operator did in one run (also the payload hooks receive)."""

    operator: Operator
    role: Role
    position: int
    n_in: int = 0
    n_out: int | None = None
    elapsed_ms: float | None = None
    status: Status = "not_run"
    error: BaseException | None = None
    message: str = ""
    retries: int = 0
    timeouts: int = 0
    columns_added: tuple[str, ...] = ()
    #: what the operator reported with ``fo.warn()`` in this run
    warnings: tuple[str, ...] = ()
    run: RunInfo | None = dataclasses.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return type(self.operator).__name__

    @property
    def kind(self) -> str:
        return self.operator.kind

    @property
    def key(self) -> tuple[str, int]:
        """Unique within a run: (role, position)."""
        return (self.role, self.position)

    def args(self) -> dict[str, Any]:
        return self.operator.args()

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable fields (what the log record carries in ``record.flight``)."""
        return {
            "operator": self.name,
            "kind": self.kind,
            "role": self.role,
            "position": self.position,
            "args": self.args(),
            "n_in": self.n_in,
            "n_out": self.n_out,
            "elapsed_ms": None if self.elapsed_ms is None else round(self.elapsed_ms, 3),
            "status": self.status,
            "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
            "retries": self.retries,
            "timeouts": self.timeouts,
            "warnings": list(self.warnings),
        }


class Hooks:
    """No-op base: override the callbacks you need."""

    def pipeline_start(self, run: RunInfo) -> None:
        """Before any source starts."""

    def operator_start(self, stats: OperatorStats) -> None:
        """Before an operator's first attempt."""

    def operator_end(self, stats: OperatorStats) -> None:
        """After an operator finished, failed, or was skipped."""

    def initialized(self, run: RunInfo, n_candidates: int) -> None:
        """After the sources: the union of the includes minus the excludes has
        ``n_candidates`` items, before any step."""

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        """After the result is built."""

    def pipeline_abort(self, run: RunInfo, error: BaseException) -> None:
        """Instead of ``pipeline_end`` when the run was interrupted (cancelled, or an error
        escaped the engine): close whatever ``pipeline_start`` opened."""


def initialized_line(n_candidates: int) -> str:
    """The log line between the sources and the steps (the design's own wording)."""
    return f"After initialization, {n_candidates} items remain"


class LoggingHook(Hooks):
    """One ``logging`` record per operator and one summary per run, on ``flight.engine``.

    ``record.flight`` holds the machine-readable fields (pipeline, run_id, operator, args,
    n_in, n_out, elapsed_ms, status, ...); the message is for people, e.g.
    ``MatchDepartment(product_id=3) filtered 500 items to 51 items in 31ms``.
    """

    def __init__(self, logger: logging.Logger = engine_logger) -> None:
        from flight.logs import direct_writer  # (flight.logs imports this module's users)

        self.logger = logger
        self._direct = direct_writer

    def operator_end(self, stats: OperatorStats) -> None:
        failed = stats.status == "failed"
        level = logging.WARNING if failed or stats.warnings else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        run = stats.run
        fields = stats.to_dict()
        if run is not None:
            fields["pipeline"] = run.pipeline
            fields["run_id"] = run.run_id
        self._log(level, stats.message, fields)

    def initialized(self, run: RunInfo, n_candidates: int) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            fields = {
                "pipeline": run.pipeline,
                "run_id": run.run_id,
                "event": "initialized",
                "n_candidates": n_candidates,
            }
            self._log(logging.INFO, initialized_line(n_candidates), fields)

    def pipeline_end(self, run: RunInfo, result: Result) -> None:
        level = logging.INFO if result.error is None else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        fields = {
            "pipeline": run.pipeline,
            "run_id": run.run_id,
            "event": "summary",
            "n_candidates": result.n_candidates,
            "n_items": len(result.items),
            "reason": result.reason,
            "warnings": list(result.warnings),
            "elapsed_ms": round(result.elapsed_ms, 3),
        }
        self._log(level, result.summary(), fields)

    def _log(self, level: int, message: str, fields: dict[str, Any]) -> None:
        """One record, made directly: ``Logger.log`` would walk the stack for the caller's
        file and line, which say nothing here (always this module) and cost a request; and
        straight to its JSON line when ``flight.logs`` is all that would handle it."""
        direct = self._direct(self.logger, level)
        if direct is not None:
            direct(message, fields)
            return
        record = self.logger.makeRecord(
            self.logger.name, level, __file__, 0, message, (), None, extra={"flight": fields}
        )
        self.logger.handle(record)


_global_lock = threading.Lock()
_global: tuple[Hooks, ...] = ()


def add_hook(hook: Hooks) -> None:
    """Call ``hook`` for every pipeline run by every engine in this process."""
    global _global
    with _global_lock:
        if hook not in _global:
            _global = (*_global, hook)


def remove_hook(hook: Hooks) -> None:
    """Stop calling ``hook`` (no error if it was not added)."""
    global _global
    with _global_lock:
        _global = tuple(h for h in _global if h is not hook)


def global_hooks() -> tuple[Hooks, ...]:
    return _global
