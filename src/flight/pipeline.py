"""``Pipeline``: the high layer. An immutable, lazy plan: includes, excludes, ordered steps."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flight._context import ContextField, check_context, context_fields
from flight.errors import ExecuteError, PipelineDefinitionError
from flight.operators.base import POLICY_FIELDS, Operator, SourceOperator

if TYPE_CHECKING:
    from flight.result import Result

__all__ = ["Pipeline"]


@dataclasses.dataclass(frozen=True, init=False)
class Pipeline:
    """A named recommendation pipeline over items keyed by ``item_type``.

    >>> pipeline = Pipeline("recs", item_type="movieId").initialize(
    ...     includes=[PopularMovies()], excludes=[AlreadyRated()]
    ... ) | fo.Hydrate(["title"]) | fo.Sort("score", desc=True)
    >>> result = await pipeline.execute(user_id=1, return_cols=["movieId", "title"])

    Pipelines are values: ``initialize`` and ``|`` return new pipelines and nothing runs
    until ``execute``. ``source_defaults`` (timeout, retries, backoff, optional) apply to this
    pipeline's sources unless a source sets its own.
    """

    name: str
    item_type: str
    includes: tuple[SourceOperator, ...]
    excludes: tuple[SourceOperator, ...]
    steps: tuple[Operator, ...]
    return_cols: tuple[str, ...] | None
    description: str
    _defaults: tuple[tuple[str, Any], ...]
    #: where the operators come from, not what the pipeline is: not compared, so that
    #: ``from_config(p.to_config()) == p`` also for operators of a user's module
    imports: tuple[str, ...] = dataclasses.field(compare=False)
    context: tuple[ContextField, ...] | None
    schema: tuple[tuple[str, str], ...] | None
    canary: tuple[tuple[str, Any], ...] | None

    def __init__(
        self,
        name: str,
        item_type: str,
        *,
        includes: Iterable[SourceOperator] = (),
        excludes: Iterable[SourceOperator] = (),
        steps: Iterable[Operator] = (),
        return_cols: Sequence[str] | None = None,
        description: str = "",
        source_defaults: Mapping[str, Any] | None = None,
        imports: Iterable[str] = (),
        context: Mapping[str, Any] | Iterable[ContextField] | None = None,
        schema: Mapping[str, str] | None = None,
        canary: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise PipelineDefinitionError(f"a pipeline needs a name, got {name!r}")
        if not isinstance(item_type, str) or not item_type:
            raise PipelineDefinitionError(
                f"pipeline {name!r}: item_type must name the item key column, got {item_type!r}"
            )
        defaults = dict(source_defaults or {})
        unknown = sorted(set(defaults) - set(POLICY_FIELDS))
        if unknown:
            raise PipelineDefinitionError(
                f"pipeline {name!r}: unknown source_defaults {unknown}; "
                f"known: {list(POLICY_FIELDS)}"
            )
        set_ = functools.partial(object.__setattr__, self)
        set_("name", name)
        set_("item_type", item_type)
        set_("includes", _sources(name, "includes", includes))
        set_("excludes", _sources(name, "excludes", excludes))
        set_("steps", tuple(_step(name, op) for op in steps))
        set_("return_cols", None if return_cols is None else tuple(return_cols))
        set_("description", description)
        set_("_defaults", tuple(sorted(defaults.items())))
        set_("imports", tuple(imports))
        set_("context", _declared(name, context))
        set_("schema", None if schema is None else tuple(dict(schema).items()))
        set_("canary", None if canary is None else tuple(dict(canary).items()))
        if self.context is not None:
            declared = {f.name for f in self.context}
            undeclared = {k: v for k, v in self._required.items() if k not in declared}
            if undeclared:
                raise PipelineDefinitionError(
                    f"pipeline {name!r}: "
                    + "; ".join(
                        f"{', '.join(v)} needs context {k!r}" for k, v in undeclared.items()
                    )
                    + f", which its context does not declare; add it, e.g. "
                    f"context: {{{next(iter(undeclared))}: int}}"
                )

    def _replace(self, **changes: Any) -> Pipeline:
        fields: dict[str, Any] = {
            "name": self.name,
            "item_type": self.item_type,
            "includes": self.includes,
            "excludes": self.excludes,
            "steps": self.steps,
            "return_cols": self.return_cols,
            "description": self.description,
            "source_defaults": self.source_defaults,
            "imports": self.imports,
            "context": self.context,
            "schema": None if self.schema is None else dict(self.schema),
            "canary": None if self.canary is None else dict(self.canary),
        }
        fields.update(changes)
        name = fields.pop("name")
        item_type = fields.pop("item_type")
        return Pipeline(name, item_type, **fields)

    @property
    def source_defaults(self) -> dict[str, Any]:
        """Source policy values this pipeline sets for its sources."""
        return dict(self._defaults)

    def initialize(
        self,
        includes: Iterable[SourceOperator],
        excludes: Iterable[SourceOperator] = (),
    ) -> Pipeline:
        """A new pipeline with these sources: candidates = Union(includes) - Union(excludes)."""
        return self._replace(includes=tuple(includes), excludes=tuple(excludes))

    def __or__(self, step: Operator | Iterable[Operator]) -> Pipeline:
        """A new pipeline with ``step`` (or several) appended."""
        new = (step,) if isinstance(step, Operator) else tuple(step)
        return self._replace(steps=(*self.steps, *new))

    def with_options(self, **changes: Any) -> Pipeline:
        """A copy with other ``name``, ``return_cols``, ``description`` or ``source_defaults``."""
        allowed = {"name", "item_type", "return_cols", "description", "source_defaults", "context"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise PipelineDefinitionError(f"with_options: unknown options {unknown}")
        return self._replace(**changes)

    def operators(self) -> tuple[Operator, ...]:
        return (*self.includes, *self.excludes, *self.steps)

    @functools.cached_property
    def _required(self) -> dict[str, list[str]]:
        needs: dict[str, list[str]] = {}
        for op in self.operators():
            for key in op.required_context():
                needs.setdefault(key, []).append(repr(op))
        return needs

    def required_context(self) -> frozenset[str]:
        """Context keys a call must give: those declared without a default when the pipeline
        declares its context, else those some operator's ``__call__`` requires."""
        if self.context is not None:
            return frozenset(f.name for f in self.context if f.required)
        return frozenset(self._required)

    def context_users(self, keys: Iterable[str]) -> dict[str, list[str]]:
        return {k: self._required.get(k) or ["the pipeline's context"] for k in keys}

    def check_context(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """``ctx`` validated against the declared context: converted to the declared types,
        defaults filled in. Raises :class:`ExecuteError` listing each key missing or of the
        wrong type (``error.problems``: ``(key, message, input)``). Without a declaration,
        ``ctx`` as it is."""
        if self.context is None:
            return dict(ctx)
        checked, problems = check_context(self.context, ctx)
        if problems:
            takes = ", ".join(f.describe() for f in self.context)
            raise ExecuteError(
                f"pipeline {self.name!r}: context "
                + "; ".join(
                    f"{k!r}: {m}" + (f" (got {v!r})" if v is not None else "")
                    for k, m, v in problems
                )
                + f". It takes: {takes}",
                problems,
            )
        return checked

    async def execute(
        self, *, return_cols: Sequence[str] | None = None, debug: bool = False, **ctx: Any
    ) -> Result:
        """Run the pipeline on the default engine; see :meth:`flight.Engine.execute`."""
        from flight.engine import default_engine

        return await default_engine().execute(self, return_cols=return_cols, debug=debug, **ctx)

    # -- config ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, source: Mapping[str, Any] | str | os.PathLike[str], *, origin: str | None = None
    ) -> Pipeline:
        """Build from a dict or a YAML/JSON file, validating all of it first.

        Raises :class:`flight.errors.ConfigError` naming the file, the pipeline and each
        offending field; nothing runs and nothing is half-built."""
        from flight.config import pipeline_from_config

        return pipeline_from_config(source, origin=origin)

    def to_config(self) -> dict[str, Any]:
        """This pipeline as a config dict; ``Pipeline.from_config(p.to_config()) == p``."""
        from flight.config import pipeline_to_config

        return pipeline_to_config(self)

    def __repr__(self) -> str:
        parts = [f"Pipeline({self.name!r}, item_type={self.item_type!r})"]
        if self.includes or self.excludes:
            parts.append(
                f".initialize(includes={list(self.includes)!r}, excludes={list(self.excludes)!r})"
            )
        parts.extend(f" | {op!r}" for op in self.steps)
        return "".join(parts)


def _declared(
    name: str, context: Mapping[str, Any] | Iterable[ContextField] | None
) -> tuple[ContextField, ...] | None:
    if context is None:
        return None
    if isinstance(context, Mapping):
        fields, problems = context_fields(context)
        if problems:
            raise PipelineDefinitionError(f"pipeline {name!r}: " + "; ".join(problems))
        return fields
    out = tuple(context)
    if not all(isinstance(f, ContextField) for f in out):
        raise PipelineDefinitionError(
            f"pipeline {name!r}: context maps each key to its type, e.g. {{'user_id': 'int'}}"
        )
    return out


def _sources(name: str, role: str, ops: Iterable[SourceOperator]) -> tuple[SourceOperator, ...]:
    out = tuple(ops)
    for op in out:
        if not isinstance(op, SourceOperator):
            kind = op.kind if isinstance(op, Operator) else type(op).__name__
            raise PipelineDefinitionError(
                f"pipeline {name!r}: {role} take source operators; {op!r} is a {kind}"
                + (" (add it as a step with `pipeline | op`)" if isinstance(op, Operator) else "")
            )
    return out


def _step(name: str, op: Any) -> Operator:
    if isinstance(op, SourceOperator):
        raise PipelineDefinitionError(
            f"pipeline {name!r}: {op!r} is a source; sources go in "
            f".initialize(includes=[...], excludes=[...]), not in steps"
        )
    if not isinstance(op, Operator):
        raise PipelineDefinitionError(
            f"pipeline {name!r}: steps are operators, got {type(op).__name__} {op!r}"
        )
    from flight.operators.base import IndexOperator, TransformOperator

    if not isinstance(op, IndexOperator | TransformOperator):
        raise PipelineDefinitionError(
            f"pipeline {name!r}: {op!r} is not a filter, sampler, sort or transform operator"
        )
    return op
