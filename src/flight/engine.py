"""The engine: Flight's meta layer. It runs a pipeline's plan.

- runs include and exclude sources concurrently, each under its timeout and retry policy;
- takes Union(includes) - Union(excludes) on interned item keys and merges the columns the
  sources returned by key (the first include with a value wins);
- applies the steps in order; index operators narrow or reorder row positions, transforms
  add columns; nothing copies the candidate table;
- records per operator its args, n_in, n_out, elapsed time, retries and timeouts and tells
  the hooks (logging by default);
- builds the :class:`~flight.result.Result`: items, the reason when empty or failed, the
  per-operator stats and, when asked, the debug trace.

Operators never see any of this. ``pipeline.execute(...)`` uses the default engine; build
your own ``Engine(hooks=..., clock=..., rng=..., policy=...)`` to inject time, randomness,
source policy or observers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from flight._interning import Interner
from flight.candidates import Array, Candidates, Rows, Table, as_array, take, take_fill
from flight.deadline import Deadline, _deadline, _debug
from flight.errors import (
    ExecuteError,
    FlightError,
    ItemTypeMismatchError,
    OperatorError,
    PipelineDefinitionError,
    ResultShapeError,
    SourceError,
)
from flight.hooks import Hooks, LoggingHook, OperatorStats, RunInfo, global_hooks
from flight.operators.base import (
    IndexOperator,
    Operator,
    Source,
    SourceOperator,
    SourcePolicy,
    TransformOperator,
    _step_warnings,
    contract_of,
)
from flight.result import RESERVED_KEYS, Result, jsonable

if TYPE_CHECKING:
    from flight.pipeline import Pipeline

__all__ = ["Engine", "default_engine", "set_default_engine"]

logger = logging.getLogger(__name__)


def _ms(seconds: float) -> str:
    ms = seconds * 1000.0
    return f"{ms:.1f}ms" if ms < 10 else f"{ms:.0f}ms"


class _Abort(Exception):
    """A required source failed: stop the other sources."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


class _SourceData:
    __slots__ = ("columns", "keys")

    def __init__(self, keys: Array, columns: dict[str, Array]) -> None:
        self.keys = keys
        self.columns = columns


def _check_context(pipeline: Pipeline, ctx: dict[str, Any]) -> dict[str, Any]:
    """``ctx`` checked against what ``pipeline`` needs: a declared context is validated,
    converted and its defaults filled in (``ExecuteError.problems``); a key some operator
    requires and the call lacks is refused (``ExecuteError.missing``)."""
    if pipeline.context is not None:
        ctx = pipeline.check_context(ctx)
    missing = sorted(pipeline.required_context() - ctx.keys())
    if missing:
        needs = pipeline.context_users(missing)
        raise ExecuteError(
            f"pipeline {pipeline.name!r} needs context "
            + "; ".join(f"{k!r} (for {', '.join(needs[k])})" for k in missing)
            + f". Pass it to execute(), e.g. execute({missing[0]}=...)",
            missing={k: needs[k] for k in missing},
        )
    return ctx


class Engine:
    """Runs pipelines. Injected: ``hooks`` (observers, in addition to the global ones and
    logging), ``clock`` (seconds, for elapsed times), ``rng`` (used by samplers without a
    seed), ``policy`` (the default :class:`SourcePolicy` for sources)."""

    def __init__(
        self,
        *,
        hooks: Iterable[Hooks] = (),
        clock: Callable[[], float] = time.perf_counter,
        rng: np.random.Generator | None = None,
        policy: SourcePolicy | None = None,
        log: bool = True,
    ) -> None:
        self.hooks = tuple(hooks)
        self.clock = clock
        self.rng = rng if rng is not None else np.random.default_rng()
        self.policy = policy if policy is not None else SourcePolicy()
        self._logging: tuple[Hooks, ...] = (LoggingHook(),) if log else ()

    def _all_hooks(self) -> tuple[Hooks, ...]:
        return (*self._logging, *global_hooks(), *self.hooks)

    def policy_for(self, pipeline: Pipeline, op: SourceOperator) -> SourcePolicy:
        """The effective policy of one source: engine < pipeline < class < instance."""
        policy = self.policy.merged(pipeline.source_defaults)
        return policy.merged(op.class_policy()).merged(op.policy_overrides())

    # -- the run ---------------------------------------------------------------------------

    async def execute(
        self,
        pipeline: Pipeline,
        /,
        *,
        return_cols: Sequence[str] | None = None,
        debug: bool = False,
        **ctx: Any,
    ) -> Result:
        """Run ``pipeline`` with context ``ctx``. Raises only :class:`ExecuteError` (bad call,
        nothing ran) or :class:`PipelineDefinitionError`; operator failures are reported in
        the result."""
        cols, ctx = self._check_call(pipeline, return_cols, ctx)
        clock = self.clock
        t0 = clock()
        debug = debug or _debug.get()
        deadline = _deadline.get()
        hooks = self._all_hooks()
        run = RunInfo(uuid.uuid4().hex[:16], pipeline.name, pipeline.item_type, ctx, debug)
        for h in hooks:
            _safe(h.pipeline_start, run)
        try:
            result = await self._run(
                pipeline, run, cols, hooks, deadline, t0, caller_cols=return_cols is not None
            )
        except BaseException as exc:  # cancelled (client gone, outer timeout): tell the hooks
            for h in hooks:
                _safe(h.pipeline_abort, run, exc)
            raise
        for h in hooks:
            _safe(h.pipeline_end, run, result)
        return result

    async def _run(
        self,
        pipeline: Pipeline,
        run: RunInfo,
        cols: list[str] | None,
        hooks: tuple[Hooks, ...],
        deadline: Deadline | None,
        t0: float,
        *,
        caller_cols: bool = False,
    ) -> Result:
        ctx = run.context
        trace: list[dict[str, Any]] | None = [] if run.debug else None
        warnings: list[str] = []
        cut: list[str] = []
        inc_stats = [
            OperatorStats(op, "include", i, run=run) for i, op in enumerate(pipeline.includes)
        ]
        exc_stats = [
            OperatorStats(op, "exclude", i, run=run) for i, op in enumerate(pipeline.excludes)
        ]
        step_stats = [OperatorStats(op, "step", i, run=run) for i, op in enumerate(pipeline.steps)]
        all_stats = (*inc_stats, *exc_stats, *step_stats)
        reason: str | None = None
        error: FlightError | None = None
        view: Candidates | None = None
        n_candidates = 0

        outcome = await self._run_sources(
            pipeline, inc_stats + exc_stats, ctx, hooks, warnings, _Budget(deadline, cut)
        )
        if isinstance(outcome, SourceError):
            error, reason = outcome, str(outcome)
            if trace is not None:  # the explorer needs the funnel most when a source failed
                self._trace_sources(trace, inc_stats + exc_stats, {}, pipeline.item_type)
                trace.extend(_trace_entry(st, _EMPTY, _EMPTY, []) for st in step_stats)
        else:
            if trace is not None:
                self._trace_sources(trace, inc_stats + exc_stats, outcome, pipeline.item_type)
            includes = [outcome.get(i) for i in range(len(inc_stats))]
            excludes = [outcome.get(len(inc_stats) + i) for i in range(len(exc_stats))]
            try:
                view, reason = self._candidates(pipeline, inc_stats, includes, excludes)
            except ResultShapeError as exc:
                error, reason = exc, str(exc)
            if view is not None:
                n_candidates = len(view)
                for h in hooks:
                    _safe(h.initialized, run, n_candidates)
            if reason is None and view is not None:
                view, reason, error = await self._run_steps(
                    pipeline, view, step_stats, ctx, hooks, trace, warnings
                )
        items, reason, error = self._items(pipeline, view, cols, reason, error, caller_cols)
        return Result(
            pipeline=pipeline.name,
            item_type=pipeline.item_type,
            items=items,
            reason=reason,
            stats=all_stats,
            n_candidates=n_candidates,
            warnings=tuple(warnings),
            error=error,
            debug=trace,
            run_id=run.run_id,
            elapsed_ms=(self.clock() - t0) * 1000.0,
            summary_column=_summary_column(pipeline, items),
            cut=tuple(cut),
        )

    def _check_call(
        self, pipeline: Pipeline, return_cols: Sequence[str] | None, ctx: dict[str, Any]
    ) -> tuple[list[str] | None, dict[str, Any]]:
        # the context first: the one check of a call's context, for library and HTTP callers
        # alike (flight.serving answers its ExecuteError with a 422 naming each key)
        ctx = _check_context(pipeline, ctx)
        if not pipeline.includes:
            raise PipelineDefinitionError(
                f"pipeline {pipeline.name!r} has no includes; call "
                f".initialize(includes=[...]) with at least one source"
            )
        cols = return_cols if return_cols is not None else pipeline.return_cols
        if cols is not None:
            if isinstance(cols, str) or not all(isinstance(c, str) for c in cols):
                raise ExecuteError(
                    f"pipeline {pipeline.name!r}: return_cols must be a list of column names, "
                    f"got {cols!r}"
                )
            clash = [c for c in cols if c in RESERVED_KEYS]
            if clash:
                raise ExecuteError(
                    f"pipeline {pipeline.name!r}: return_cols {clash} clash with the result's "
                    f"own keys {list(RESERVED_KEYS)}; rename the column with fo.Rename"
                )
        return (list(cols) if cols is not None else None), ctx

    # -- sources ----------------------------------------------------------------------------

    async def _run_sources(
        self,
        pipeline: Pipeline,
        stats: list[OperatorStats],
        ctx: Mapping[str, Any],
        hooks: tuple[Hooks, ...],
        warnings: list[str],
        budget: _Budget,
    ) -> dict[int, _SourceData] | SourceError:
        results: dict[int, _SourceData] = {}
        failed: list[SourceError] = []
        try:
            async with asyncio.TaskGroup() as group:
                for i, st in enumerate(stats):
                    policy = self.policy_for(pipeline, st.operator)  # type: ignore[arg-type]
                    group.create_task(
                        self._run_source(
                            pipeline, i, st, policy, ctx, hooks, results, warnings, budget
                        )
                    )
        except* _Abort as aborted:
            failed.extend(e.error for e in aborted.exceptions if isinstance(e, _Abort))
        return failed[0] if failed else results

    async def _run_source(
        self,
        pipeline: Pipeline,
        slot: int,
        st: OperatorStats,
        policy: SourcePolicy,
        ctx: Mapping[str, Any],
        hooks: tuple[Hooks, ...],
        results: dict[int, _SourceData],
        warnings: list[str],
        budget: _Budget,
    ) -> None:
        op: SourceOperator = st.operator  # type: ignore[assignment]
        kwargs = _context_for(op, ctx)
        clock = self.clock
        deadline = budget.deadline
        st.status = "running"
        for h in hooks:
            _safe(h.operator_start, st)
        t0 = clock()
        failure: BaseException | None = None
        timed_out = cut = False
        try:
            for attempt in range(policy.retries + 1):
                delay = policy.backoff * 2 ** (attempt - 1) if attempt else 0.0
                timeout = policy.timeout
                by_deadline = False
                if deadline is not None:
                    left = deadline.remaining() - delay
                    if left <= 0:
                        cut = True  # no time left for (another) attempt
                        break
                    if timeout is None or left < timeout:
                        timeout, by_deadline = left, True
                if attempt:
                    st.retries += 1
                    if delay:
                        await asyncio.sleep(delay)
                try:
                    if timeout is None:
                        produced = await _call_source(op, kwargs)
                    else:
                        async with asyncio.timeout(timeout):
                            produced = await _call_source(op, kwargs)
                except TimeoutError as exc:
                    failure = exc
                    if by_deadline:
                        cut = True
                        break
                    st.timeouts += 1
                    timed_out = True
                    continue
                except Exception as exc:
                    failure, timed_out = exc, False
                    continue
                data = _parse_source(op, produced, pipeline.item_type)  # shape errors: no retry
                results[slot] = data
                st.n_out = len(data.keys)
                st.status = "ok"
                st.elapsed_ms = (clock() - t0) * 1000.0
                what = "items" if st.role == "include" else "items to exclude"
                st.message = f"{op!r} returned {st.n_out} {what} in {_ms(clock() - t0)}"
                return
            if cut:
                error = _cut_error(op, deadline, clock() - t0, failure)
            else:
                error = _source_error(op, policy, failure, timed_out, st.retries)
        except ResultShapeError as exc:
            error = SourceError(str(exc), op)
            error.__cause__ = exc
        except asyncio.CancelledError:
            st.status = "cancelled"
            st.elapsed_ms = (clock() - t0) * 1000.0
            st.message = f"{op!r} cancelled: another required source failed"
            raise
        finally:
            if st.status in ("ok", "cancelled"):
                for h in hooks:
                    _safe(h.operator_end, st)
        if cut:
            st.status = "cut"
            budget.cut.append(repr(op))
        else:
            st.status = "failed" if not policy.optional else "skipped"
        st.error = error
        st.elapsed_ms = (clock() - t0) * 1000.0
        if policy.optional:
            note = f"{error}; optional {st.role} skipped"
            st.message = note
            warnings.append(note)
            for h in hooks:
                _safe(h.operator_end, st)
            return
        st.message = str(error)
        for h in hooks:
            _safe(h.operator_end, st)
        raise _Abort(error)

    def _trace_sources(
        self,
        trace: list[dict[str, Any]],
        stats: list[OperatorStats],
        data: dict[int, _SourceData],
        key: str,
    ) -> None:
        for i, st in enumerate(stats):
            got = data.get(i)
            keys = got.keys if got is not None else _EMPTY
            rows = _preview({key: got.keys, **got.columns}) if got is not None else []
            trace.append(_trace_entry(st, _EMPTY, keys, rows))

    # -- set algebra ---------------------------------------------------------------------------

    def _candidates(
        self,
        pipeline: Pipeline,
        inc_stats: list[OperatorStats],
        includes: list[_SourceData | None],
        excludes: list[_SourceData | None],
    ) -> tuple[Candidates, str | None]:
        key = pipeline.item_type
        _check_id_types(pipeline, includes, excludes)
        present = [d for d in includes if d is not None]
        ex = [d for d in excludes if d is not None]
        # one factorize over includes, then excludes: codes are given in order of first
        # sight, so the union of the includes is codes 0..n_union-1, in candidate order,
        # and the excludes' codes come with it
        interner, coded = Interner.for_run(key, [d.keys for d in present + ex])
        codes, ex_coded = coded[: len(present)], coded[len(present) :]
        n_union = max((int(c.max()) + 1 for c in codes if len(c)), default=0)
        excluded = np.zeros(n_union, dtype=bool)
        for ex_codes in ex_coded:
            excluded[ex_codes[ex_codes < n_union]] = True
        removed = bool(excluded.any())
        base_codes = np.flatnonzero(~excluded) if removed else np.arange(n_union, dtype=np.intp)
        n = len(base_codes)
        columns: dict[str, Array] = {key: interner.ids(base_codes)}
        if n and any(d.columns for d in present):
            row_of_code = None
            if removed:
                row_of_code = np.full(n_union, -1, dtype=np.intp)
                row_of_code[base_codes] = np.arange(n, dtype=np.intp)
            for d, c in zip(present, codes, strict=True):
                if d.columns:
                    rows = c if row_of_code is None else row_of_code[c]
                    _merge_columns(columns, d, rows, n, key)
        table = Table(key, columns, base_codes, interner, rng=self.rng)
        view = Candidates(table, np.arange(n, dtype=np.intp), identity=True)
        reason = None
        if n == 0:
            if n_union == 0:
                reason = "no candidates: " + "; ".join(
                    s.message if s.status != "ok" else f"{s.operator!r} returned 0 items"
                    for s in inc_stats
                )
            else:
                names = ", ".join(repr(op) for op in pipeline.excludes)
                reason = f"excludes removed all {n_union} candidates ({names})"
        return view, reason

    # -- steps ---------------------------------------------------------------------------------

    async def _run_steps(
        self,
        pipeline: Pipeline,
        view: Candidates,
        stats: list[OperatorStats],
        ctx: Mapping[str, Any],
        hooks: tuple[Hooks, ...],
        trace: list[dict[str, Any]] | None,
        warnings: list[str],
    ) -> tuple[Candidates, str | None, FlightError | None]:
        clock = self.clock
        for st in stats:
            op = st.operator
            n_in = st.n_in = len(view)
            st.status = "running"
            for h in hooks:
                _safe(h.operator_start, st)
            before = view
            notes: list[str] = []
            token = _step_warnings.set(notes)
            t0 = clock()
            try:
                if isinstance(op, IndexOperator):
                    view = await self._index_step(op, view, ctx)
                    elapsed = clock() - t0
                    n_out = len(view)
                    if op.kind == "filter":
                        what = f"filtered {n_in} items to {n_out} items"
                    elif op.kind == "sampler":
                        what = f"sampled {n_out} of {n_in} items"
                    else:
                        what = f"sorted {n_out} items"
                else:
                    view, added = await self._transform_step(op, view, ctx)
                    elapsed = clock() - t0
                    n_out = len(view)
                    st.columns_added = added
                    what = f"set {', '.join(added) or 'no columns'} on {n_in} items"
            except Exception as exc:
                elapsed = clock() - t0
                if isinstance(exc, OperatorError):
                    error: OperatorError = exc
                    error.operator = op
                else:
                    error = OperatorError(f"{op!r} failed: {_describe(exc)}", op)
                    error.__cause__ = exc
                st.status, st.error = "failed", error
                st.elapsed_ms = elapsed * 1000.0
                st.message = str(error)
                if trace is not None:
                    trace.append(_trace_entry(st, before.keys(), _EMPTY, []))
                for h in hooks:
                    _safe(h.operator_end, st)
                return view, str(error), error
            finally:
                _step_warnings.reset(token)
            st.n_out = n_out
            st.status = "ok"
            st.elapsed_ms = elapsed * 1000.0
            st.message = f"{op!r} {what} in {_ms(elapsed)}"
            if notes:  # fo.warn() from the step: on its record, its line and the result
                st.warnings = tuple(notes)
                st.message += "; warning: " + "; ".join(notes)
                warnings.extend(f"{op!r}: {n}" for n in notes)
            if trace is not None:
                rows = _preview({c: view.column(c) for c in view.columns})
                trace.append(_trace_entry(st, before.keys(), view.keys(), rows))
            for h in hooks:
                _safe(h.operator_end, st)
            if n_out == 0:
                verb = op.verb if isinstance(op, IndexOperator) else "transforming"
                return view, f"{op!r} returned 0 items after {verb} {n_in} items", None
        return view, None, None

    async def _index_step(
        self, op: IndexOperator, view: Candidates, ctx: Mapping[str, Any]
    ) -> Candidates:
        if contract_of(op).fast:
            local = op.select(view, ctx)
            return view.select(np.asarray(local, dtype=np.intp))
        df = view.frame()
        out: Any = await _call_step(op, df, ctx)
        rows = _rows_from_index(op, out, view)
        return Candidates(view.table, rows)

    async def _transform_step(
        self, op: Operator, view: Candidates, ctx: Mapping[str, Any]
    ) -> tuple[Candidates, tuple[str, ...]]:
        if not isinstance(op, TransformOperator):
            raise PipelineDefinitionError(f"{op!r} cannot be a step (kind {op.kind!r})")
        if contract_of(op).fast:
            out: Any = op.transform(view, ctx)
            if inspect.isawaitable(out):
                out = await out
            cols: dict[str, Array | None] = dict(out)
        else:
            df = view.frame()
            out = await _call_step(op, df, ctx)
            cols = _columns_from_transform(op, out, df, view.item_type)
        if view.item_type in cols:
            raise ResultShapeError(
                f"{op!r} tried to change the item key column {view.item_type!r}; "
                f"transforms add or change other columns",
                op,
            )
        view.table.set_columns(cols, view.rows, view.identity)
        fresh = Candidates(view.table, view.rows, view.identity)
        return fresh, tuple(k for k, v in cols.items() if v is not None)

    # -- result --------------------------------------------------------------------------------

    def _items(
        self,
        pipeline: Pipeline,
        view: Candidates | None,
        cols: list[str] | None,
        reason: str | None,
        error: FlightError | None,
        caller_cols: bool,
    ) -> tuple[pd.DataFrame, str | None, FlightError | None]:
        if view is None:
            names = cols if cols is not None else [pipeline.item_type]
            return pd.DataFrame({c: [] for c in names}), reason, error
        available = view.columns
        names = cols if cols is not None else available
        missing = [c for c in names if c not in view]
        if reason is not None:  # empty (or failed) before the end: the steps that would
            # have produced the missing columns did not run, so they are present and empty
            return (
                pd.DataFrame({c: view.column(c)[:0] if c in view else [] for c in names}),
                reason,
                error,
            )
        if missing:
            asks = f"return_cols asks for {', '.join(map(repr, missing))}, which no include or step"
            have = f"the candidates have: {', '.join(available)}"
            problem: FlightError
            if caller_cols:  # the caller's mistake
                problem = ExecuteError(f"{asks} of pipeline {pipeline.name!r} produced; {have}")
            else:  # the pipeline's own return_cols: its definition is wrong
                problem = PipelineDefinitionError(
                    f"pipeline {pipeline.name!r}: its {asks} produced; {have}. Fix the "
                    f"pipeline's return_cols or add a step that sets the column"
                )
            return pd.DataFrame({c: [] for c in names}), str(problem), problem
        clash = [c for c in names if c in RESERVED_KEYS]
        if clash:  # it would be overwritten by the result's own key in every answer
            problem = PipelineDefinitionError(
                f"pipeline {pipeline.name!r} returns the column(s) {', '.join(map(repr, clash))}, "
                f"which the result's own keys {list(RESERVED_KEYS)} would overwrite in answers; "
                f"rename it (fo.Rename) or leave it out of return_cols"
            )
            return pd.DataFrame({c: [] for c in names}), str(problem), problem
        return pd.DataFrame({c: view.column(c) for c in names}, copy=False), None, None


_EMPTY = np.empty(0, dtype=np.intp)


def _safe(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        logger.exception("flight hook %r failed; ignoring", fn)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, FlightError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _context_for(op: Operator, ctx: Mapping[str, Any]) -> Mapping[str, Any]:
    contract = contract_of(op)
    if contract.context_any:
        return ctx
    return {k: ctx[k] for k in contract.context_names if k in ctx}


#: a plain-``def`` step class whose every run so far took less than this (seconds) ...
INLINE_BELOW = 0.002
#: ... once it has run this many times in a worker thread (the first not counted: it warms
#: up), runs on the event loop
INLINE_AFTER = 4


class _StepCost:
    """How long the runs of one user step class have taken: the slowest, and how many."""

    __slots__ = ("runs", "slowest")

    def __init__(self) -> None:
        self.runs = 0
        self.slowest = 0.0

    @property
    def inline(self) -> bool:
        return self.runs >= INLINE_AFTER and self.slowest < INLINE_BELOW


_STEP_COSTS: dict[type, _StepCost] = {}


async def _call_step(op: Operator, df: pd.DataFrame, ctx: Mapping[str, Any]) -> Any:
    """A user's step (the pandas path). A plain ``def`` runs in a worker thread, so that a
    CPU-heavy step (scoring 50k candidates) never stalls the event loop: health checks and
    other requests go on, and a request past its budget is answered 504 on time. A step
    class whose runs have all taken under 2 ms (a typical ``df[df.price <= 80].index``) runs
    on the loop once it has shown it three times after its first (which warms up): the
    thread hop would cost a good part of it, and the loop waits no longer than for any
    other short callback. One run of 2 ms or more (or one cut by its budget) sends the
    class back to the thread for good."""
    kwargs = _context_for(op, ctx)
    if contract_of(op).is_async:
        out = op(df, **kwargs)
    else:
        cost = _STEP_COSTS.get(type(op))
        if cost is None:
            cost = _STEP_COSTS[type(op)] = _StepCost()
        start = time.perf_counter()
        try:
            out = op(df, **kwargs) if cost.inline else await asyncio.to_thread(op, df, **kwargs)
        finally:
            if cost.runs:  # the first run warms caches up (imports, pandas' own): not a measure
                cost.slowest = max(cost.slowest, time.perf_counter() - start)
            cost.runs += 1
    if inspect.isawaitable(out):
        out = await out
    return out


#: worker threads per sync source class: a source that hangs (a blocking client without a
#: timeout) can only ever hold its own class's threads, never another source's
SOURCE_THREADS = 8


class _SourceThreads:
    """The threads of one sync source class, and how many of them are inside a call (until
    the call really returns: a timed-out call's thread runs on)."""

    def __init__(self, cls: type) -> None:
        self.limit = int(getattr(cls, "threads", SOURCE_THREADS))
        self.pool = ThreadPoolExecutor(self.limit, thread_name_prefix=f"flight-{cls.__name__}")
        self.busy = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            self.busy += 1

    def release(self, _: object = None) -> None:
        with self._lock:
            self.busy -= 1


_pools: dict[type, _SourceThreads] = {}
_pools_lock = threading.Lock()


def _threads_for(cls: type) -> _SourceThreads:
    with _pools_lock:
        found = _pools.get(cls)
        if found is None:
            found = _pools[cls] = _SourceThreads(cls)
        return found


async def _call_source(op: SourceOperator, kwargs: Mapping[str, Any]) -> Any:
    if contract_of(op).is_async:
        return await op(**kwargs)  # type: ignore[misc]
    threads = _threads_for(type(op))
    if threads.busy >= threads.limit:
        # every thread is still inside an earlier call (past its timeout, or slow): a new
        # call would only queue behind them, so fail now and let the policy decide
        raise RuntimeError(
            f"all {threads.limit} threads of {type(op).__name__} are still busy with "
            f"earlier calls (a call that blocks without a timeout keeps its thread); give "
            f"its client a timeout, or raise its `threads`"
        )
    threads.take()  # on the event loop, right after the check: no other call in between
    context = contextvars.copy_context()
    work = threads.pool.submit(context.run, functools.partial(op, **kwargs))
    work.add_done_callback(threads.release)
    out = await asyncio.wrap_future(work)
    if inspect.isawaitable(out):
        out = await out
    return out


class _Budget:
    """The deadline of one run and the sources it cut (shared by the source tasks)."""

    __slots__ = ("cut", "deadline")

    def __init__(self, deadline: Deadline | None, cut: list[str]) -> None:
        self.deadline = deadline
        self.cut = cut


def _cut_error(
    op: SourceOperator, deadline: Deadline | None, elapsed: float, failure: BaseException | None
) -> SourceError:
    budget = f" of {deadline.seconds * 1000:.4g}ms" if deadline is not None else ""
    before = (
        f" (an earlier attempt failed: {_describe(failure)})"
        if failure is not None and not isinstance(failure, TimeoutError)
        else ""
    )
    error = SourceError(
        f"{op!r} cut: the request deadline{budget} ran out after {_ms(elapsed)}{before}",
        op,
        timed_out=True,
    )
    error.__cause__ = failure
    return error


def _source_error(
    op: SourceOperator,
    policy: SourcePolicy,
    failure: BaseException | None,
    timed_out: bool,
    retries: int,
) -> SourceError:
    if timed_out:
        message = (
            f"{op!r} timed out after {retries} retries"
            if retries
            else f"{op!r} timed out after {policy.timeout:g}s"
        )
    else:
        what = _describe(failure)
        message = (
            f"{op!r} failed after {retries} retries: {what}"
            if retries
            else f"{op!r} failed: {what}"
        )
    error = SourceError(message, op, timed_out=timed_out)
    error.__cause__ = failure
    return error


def _parse_source(op: SourceOperator, produced: Any, key: str) -> _SourceData:
    data = produced.data if isinstance(produced, Source) else produced
    if isinstance(data, pd.DataFrame):
        if key in data.columns:
            keys = as_array(data[key])
            cols = {str(c): as_array(data[c]) for c in data.columns if c != key}
        elif data.index.name == key:
            keys = as_array(data.index)
            cols = {str(c): as_array(data[c]) for c in data.columns}
        else:
            raise ResultShapeError(
                f"{op!r} returned a DataFrame without the item key column {key!r} (columns: "
                f"{', '.join(map(str, data.columns))}); add it, or make it the index",
                op,
            )
        return _SourceData(keys, cols)
    if isinstance(data, pd.Series):
        if data.index.name == key and data.name is not None and data.name != key:
            return _SourceData(as_array(data.index), {str(data.name): as_array(data)})
        if data.name in (key, None):
            return _SourceData(as_array(data), {})
        raise ResultShapeError(
            f"{op!r} returned a Series {data.name!r}; name it {key!r} (a Series of ids) or "
            f"index it by {key!r} (a column of values)",
            op,
        )
    if isinstance(data, pd.Index | np.ndarray | ExtensionArray | list | tuple | range):
        return _SourceData(as_array(data), {})
    raise ResultShapeError(
        f"{op!r} returned {type(produced).__name__}; return fo.Source(DataFrame with a "
        f"{key!r} column, or a list of ids)",
        op,
    )


def _merge_columns(
    columns: dict[str, Array], data: _SourceData, base_rows: Rows, n: int, key: str
) -> None:
    ok = base_rows >= 0
    src_rows = np.full(n, -1, dtype=np.intp)
    hits = np.flatnonzero(ok)
    src_rows[base_rows[hits][::-1]] = hits[::-1]  # the first row of a repeated id wins
    complete = bool(src_rows.min() >= 0) if n else True
    for name, values in data.columns.items():
        if name == key:
            continue
        col = take(values, src_rows) if complete else take_fill(values, src_rows)
        existing = columns.get(name)
        if existing is None:
            columns[name] = col
            continue
        missing = pd.isna(existing)
        if np.any(missing):
            merged = pd.Series(existing, copy=False).where(~missing, pd.Series(col, copy=False))
            columns[name] = as_array(merged)


def _not_rows(op: IndexOperator) -> ResultShapeError:
    return ResultShapeError(
        f"{op!r} returned index labels that are not rows of the df it was given; return "
        f"labels from df.index",
        op,
    )


def _rows_from_index(op: IndexOperator, out: Any, view: Candidates) -> Rows:
    n = len(view)
    if isinstance(out, pd.Series | np.ndarray) and pd.api.types.is_bool_dtype(out.dtype):
        if isinstance(out, pd.Series) and out.hasnans:  # nullable booleans (a comparison
            out = out.fillna(False)  # with an Int64 column): a missing value keeps no row
        mask = np.asarray(out, dtype=bool)
        if len(mask) != n:
            raise ResultShapeError(
                f"{op!r} returned a boolean mask of {len(mask)} values for {n} rows", op
            )
        kept: Rows = view.rows[mask]
        return kept
    labels = np.asarray(out)
    if labels.dtype.kind not in "iu":
        raise ResultShapeError(
            f"{op!r} returned {type(out).__name__} of {labels.dtype}; return the index of the "
            f"rows to keep (e.g. df[mask].index) or a boolean mask",
            op,
        )
    labels = labels.astype(np.intp, copy=False)
    if len(labels) == 0:
        return labels
    if len(labels) > 1 and bool((labels[1:] > labels[:-1]).all()):
        # in increasing order (what df[mask].index gives), so each label once; on the
        # whole table, a range check is all the checking they need
        if labels[0] < 0 or labels[-1] >= view.table.n:
            raise _not_rows(op)
        if view.identity:
            return labels
        member = np.zeros(view.table.n, dtype=bool)
        member[view.rows] = True
        if not member[labels].all():
            raise _not_rows(op)
        return labels
    inverse = view.inverse()
    if labels.min() < 0 or labels.max() >= len(inverse) or (inverse[labels] < 0).any():
        raise _not_rows(op)
    seen = np.zeros(len(inverse), dtype=bool)
    seen[labels] = True
    if int(np.count_nonzero(seen)) != len(labels):
        raise ResultShapeError(f"{op!r} returned the same row more than once", op)
    return labels


def _columns_from_transform(
    op: Operator, out: Any, df: pd.DataFrame, key: str
) -> dict[str, Array | None]:
    if isinstance(out, pd.DataFrame):
        if len(out) != len(df) or not out.index.equals(df.index):
            raise ResultShapeError(
                f"{op!r} returned {len(out)} rows that differ from the {len(df)} it was given; a "
                f"transform returns the same rows (drop rows with a FilterOperator)",
                op,
            )
        cols: dict[str, Array | None] = {str(c): as_array(out[c]) for c in out.columns}
        if key in cols and key in df and out[key].equals(df[key]):
            del cols[key]  # a full frame (df.assign(...)) carries the key unchanged
        return cols
    if isinstance(out, pd.Series):
        if out.name is None:
            raise ResultShapeError(f"{op!r} returned an unnamed Series; name it", op)
        if not out.index.equals(df.index):
            raise ResultShapeError(f"{op!r} returned a Series not aligned with df", op)
        return {str(out.name): as_array(out)}
    if isinstance(out, Mapping):
        cols = {}
        for name, values in out.items():
            if values is None:
                cols[str(name)] = None
                continue
            if isinstance(values, pd.Series) and not values.index.equals(df.index):
                raise ResultShapeError(f"{op!r}: column {name!r} is not aligned with df", op)
            arr = as_array(values)
            if len(arr) != len(df):
                raise ResultShapeError(
                    f"{op!r}: column {name!r} has {len(arr)} values for {len(df)} rows", op
                )
            cols[str(name)] = arr
        return cols
    raise ResultShapeError(
        f"{op!r} returned {type(out).__name__}; a transform returns a DataFrame, a named "
        f"Series or a dict of columns",
        op,
    )


#: rows of the candidates shown at each step of the debug trace (``items``)
DEBUG_ROWS = 100


def _preview(columns: Mapping[str, Array]) -> list[dict[str, Any]]:
    """The first :data:`DEBUG_ROWS` rows of ``columns`` as JSON-ready records."""
    values = {name: jsonable(col[:DEBUG_ROWS]) for name, col in columns.items()}
    names = list(values)
    return [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]


#: ids listed per step in a debug trace (the counts are always exact): a trace of 500k
#: candidates stays a few tens of kB, not 14 MB
DEBUG_IDS = 1000


def _trace_entry(
    st: OperatorStats, inputs: Any, outputs: Any, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": st.name,
        "kind": st.kind,
        "role": st.role,
        "kwargs": st.args(),
        "input_ids": jsonable(inputs[:DEBUG_IDS]),
        "output_ids": jsonable(outputs[:DEBUG_IDS]),
        "n_input": len(inputs),
        "n_output": len(outputs),
        "ids_truncated": len(inputs) > DEBUG_IDS or len(outputs) > DEBUG_IDS,
        "status": st.status,
        "elapsed_ms": None if st.elapsed_ms is None else round(st.elapsed_ms, 3),
        "message": st.message,
        "items": rows,
    }


def _summary_column(pipeline: Pipeline, items: pd.DataFrame) -> str | None:
    for op in reversed(pipeline.steps):
        for attr in ("output", "by", "maximize"):
            value = getattr(op, attr, None)
            if isinstance(value, tuple) and value:
                value = value[0]
            if isinstance(value, str) and value in items:
                return value
    return "score" if "score" in items else None


_default: Engine | None = None


def default_engine() -> Engine:
    """The engine ``pipeline.execute`` uses."""
    global _default
    if _default is None:
        _default = Engine()
    return _default


def set_default_engine(engine: Engine) -> None:
    """Make ``engine`` the one ``pipeline.execute`` uses (inject clock, rng, hooks, policy)."""
    global _default
    _default = engine


def _id_family(keys: Any) -> tuple[str, Any] | None:
    """What kind of ids a source returned ("number", "string", "bool"), with an example;
    None for an empty source (it agrees with anything)."""
    values = np.asarray(keys)
    if len(values) == 0:
        return None
    kind = values.dtype.kind
    sample = values[0]
    if kind == "O":
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, bool | np.bool_):
            kind = "b"
        elif isinstance(sample, int | float | np.number):
            kind = "i"
        elif isinstance(sample, str):
            kind = "U"
    family = {"i": "number", "u": "number", "f": "number", "b": "bool", "U": "string"}
    plain = sample.item() if isinstance(sample, np.generic) else sample
    return family.get(kind, f"{values.dtype}"), plain


def _check_id_types(
    pipeline: Pipeline, includes: list[_SourceData | None], excludes: list[_SourceData | None]
) -> None:
    """Refuse sources whose item ids are of different types: ``1`` and ``"1"`` never match,
    so the union would hold both, a merge would not line up and an exclude would not
    exclude: a silently wrong answer."""
    seen: list[tuple[Any, str, Any]] = []
    ops = [*pipeline.includes, *pipeline.excludes]
    for op, data in zip(ops, [*includes, *excludes], strict=True):
        if data is None:
            continue
        found = _id_family(data.keys)
        if found is not None:
            seen.append((op, *found))
    families = {family for _, family, _ in seen}
    if len(families) <= 1:
        return
    first = seen[0]
    other = next(s for s in seen if s[1] != first[1])
    raise ItemTypeMismatchError(
        f"sources disagree on the type of {pipeline.item_type!r} ids: {first[0]!r} returned "
        f"{first[1]} ids (e.g. {first[2]!r}) and {other[0]!r} returned {other[1]} ids (e.g. "
        f"{other[2]!r}); ids of different types never match, so the union, the merge and the "
        f"excludes would be wrong. Make every source return one type (convert in the source, "
        f"e.g. .astype(int) or .astype(str))",
        other[0],
    )
