"""Pipelines as configuration (YAML or JSON), validated whole before anything is built.

A config is one pipeline::

    name: movie_recs
    item_type: movieId
    imports: [movielens_operators]        # modules that define operators (config dir first),
                                          # or files: [../movielens_operators.py]
    defaults: {timeout: 1.0, retries: 1}  # source policy for this pipeline's sources
    context: {user_id: int}               # the context execute() takes (checked first)
    includes:
      - PopularMovies: {n: 300}
      - op: SimilarToRecent               # the long form, for a per-source policy
        args: {n: 200}
        policy: {optional: true, timeout: 0.5}
    excludes:
      - AlreadyRated: {}
    steps:
      - Hydrate: {columns: [title, genres]}
      - Sort: {by: score, desc: true}
    return_cols: [movieId, title, score]

An operator entry is ``{Name: {args}}`` (``{Name: null}`` or just ``Name`` for no args), or
``{op: Name, args: {...}, policy: {...}}``. Every problem (unknown key, unknown operator,
missing or mistyped argument, a filter among the includes...) is collected and reported
together in one :class:`~flight.errors.ConfigError` naming the file, the pipeline and the
field.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from flight._context import ContextField, context_fields, field_config
from flight._limits import MAX_CONFIG_BYTES, TooDeep, TooManyAliases, load_json, load_yaml
from flight.errors import ConfigError, FlightError, OperatorArgumentError
from flight.operators.base import (
    POLICY_FIELDS,
    Operator,
    SourceOperator,
    _describe_error,
    _PolicyOverrides,
    contract_of,
)
from flight.operators.registry import get_operator
from flight.pipeline import Pipeline

__all__ = ["dump_config", "load_config_file", "pipeline_from_config", "pipeline_to_config"]


class PipelineConfig(BaseModel):
    """The top level of a pipeline config (operator entries are checked one by one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    item_type: str = Field(min_length=1)
    description: str = ""
    imports: list[str] = []
    defaults: _PolicyOverrides | None = None
    context: dict[str, Any] | None = None
    #: the columns the sources provide (name -> dtype): steps are checked against it
    columns_schema: dict[str, str] | None = Field(default=None, alias="schema")
    #: a sample context: a new version of the config runs on it before it replaces the
    #: serving one (hot reload), and `flight validate` runs it too
    canary: dict[str, Any] | None = None
    includes: list[Any] = Field(min_length=1)
    excludes: list[Any] = []
    steps: list[Any] = []
    return_cols: list[str] | None = None


class _EntryLong(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: str
    args: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a YAML or JSON file into a dict, with file:line in any syntax error."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{p}: a config of {size} bytes is above the limit of {MAX_CONFIG_BYTES} bytes; "
                f"a pipeline config is a few kB"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = load_json(text) if p.suffix.lower() == ".json" else load_yaml(text)
    except (TooManyAliases, TooDeep) as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: a pipeline config is a mapping with name, item_type, includes, ...; "
            f"found {type(data).__name__}"
        )
    return data


def pipeline_from_config(
    source: Mapping[str, Any] | str | os.PathLike[str], *, origin: str | None = None
) -> Pipeline:
    """See :meth:`Pipeline.from_config`."""
    base_dir: Path | None = None
    if isinstance(source, Mapping):
        data = dict(source)
        where = origin or "<config>"
    elif isinstance(source, str | os.PathLike):
        data = load_config_file(source)
        where = origin or str(source)
        base_dir = Path(source).resolve().parent
    else:
        raise ConfigError(f"from_config takes a dict or a file path, not {type(source).__name__}")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    problems: list[str] = []
    try:
        cfg: PipelineConfig | None = PipelineConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        cfg = None
        problems.extend(_top_level_problem(e) for e in exc.errors())
    context: tuple[ContextField, ...] | None = None
    if cfg is not None and cfg.context is not None:
        context, context_problems = context_fields(cfg.context)
        problems.extend(context_problems)
    imports = data.get("imports", [])
    if isinstance(imports, list) and all(isinstance(i, str) for i in imports):
        # imported even when another top-level key is wrong, so that the operators they
        # define are not reported as unknown as well
        problems.extend(_import_modules(imports, base_dir))
    ops: dict[str, list[Operator]] = {"includes": [], "excludes": [], "steps": []}
    if not any(p.startswith("imports") for p in problems):
        for role in ops:
            entries = data.get(role) or []
            if not isinstance(entries, list):
                continue  # already reported by the top-level model
            for i, entry in enumerate(entries):
                op = _build_entry(role, i, entry, problems)
                if op is not None:
                    ops[role].append(op)
        if any("unknown operator" in p for p in problems):
            problems.extend(_changed_since_import(imports, base_dir))
    label = f"pipeline {name!r}" if name else "pipeline"
    _raise_problems(f"{where}: {label}: ", problems)
    assert cfg is not None
    try:
        pipeline = Pipeline(
            cfg.name,
            cfg.item_type,
            includes=ops["includes"],  # type: ignore[arg-type]
            excludes=ops["excludes"],  # type: ignore[arg-type]
            steps=ops["steps"],
            return_cols=cfg.return_cols,
            description=cfg.description,
            source_defaults=(
                cfg.defaults.model_dump(exclude_unset=True) if cfg.defaults is not None else None
            ),
            imports=cfg.imports,
            context=context,
            schema=cfg.columns_schema,
            canary=cfg.canary,
        )
    except FlightError as exc:
        raise ConfigError(f"{where}: {label}: {exc}", [str(exc)]) from None
    if cfg.columns_schema is not None:
        from flight._columns import column_problems

        found = column_problems(
            cfg.item_type, cfg.columns_schema, pipeline.steps, pipeline.return_cols
        )
        _raise_problems(f"{where}: {label}: ", found)
    return pipeline


def _raise_problems(header: str, problems: list[str]) -> None:
    """One :class:`ConfigError` listing every problem (none: nothing to raise)."""
    if len(problems) == 1:
        raise ConfigError(header + problems[0], problems)
    if problems:
        raise ConfigError(
            header + f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems),
            problems,
        )


def _top_level_problem(err: Mapping[str, Any]) -> str:
    loc = list(err.get("loc", ()))
    if err.get("type") == "extra_forbidden":
        known = list(PipelineConfig.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{_loc(loc)}: unknown key{hint} (known keys: {', '.join(known)})"
    if loc and loc[0] in ("includes", "excludes", "steps") and len(loc) > 1:
        return ""
    return _describe_error({**err, "loc": (_loc(loc),)}) if loc else _describe_error(err)


def _loc(parts: list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@contextmanager
def _search_path(base_dir: Path | None) -> Iterator[None]:
    if base_dir is None:
        yield
        return
    entry = str(base_dir)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(entry)


def _import_modules(modules: list[str], base_dir: Path | None) -> list[str]:
    problems: list[str] = []
    with _search_path(base_dir):
        for i, module in enumerate(modules):
            try:
                if _is_file_import(module):
                    _import_file(module, base_dir)
                else:
                    importlib.import_module(module)
                name = Path(module).stem if _is_file_import(module) else module
                _seen_at.setdefault(name, time.time())
            except Exception as exc:
                where = f" (looked in {base_dir} and sys.path)" if base_dir else ""
                if _is_file_import(module):
                    where = f" (relative to {base_dir})" if base_dir else ""
                problems.append(
                    f"imports[{i}]: cannot import {module!r}{where}: {type(exc).__name__}: {exc}"
                )
    return problems


#: when this process first saw each module a config imports (already imported, or imported)
_seen_at: dict[str, float] = {}


def _changed_since_import(imports: Any, base_dir: Path | None) -> list[str]:
    """An operator added to a module this process imported before is not in it until the
    process restarts: say so, rather than only "unknown operator"."""
    notes = []
    for entry in imports if isinstance(imports, list) else []:
        name = Path(entry).stem if _is_file_import(str(entry)) else str(entry)
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        seen = _seen_at.get(name)
        if path is None or seen is None:
            continue
        with suppress(OSError):
            if Path(path).stat().st_mtime > seen:
                notes.append(
                    f"imports: {Path(path).name} changed after this process imported it, and a "
                    f"module is imported once per process: restart it to load new operators"
                )
    return notes


def _is_file_import(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _import_file(entry: str, base_dir: Path | None) -> None:
    """Import a ``.py`` file (relative to the config) as the module named by its stem; the
    same file imported as a module before (``import movielens_operators``) is reused."""
    import importlib.util

    path = Path(entry).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        known = getattr(loaded, "__file__", None)
        if known is not None and Path(known).resolve() == path:
            return
        raise ImportError(f"a different module named {name!r} is already imported from {known}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _search_path(path.parent):
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


def _parse_entry(entry: Any) -> tuple[str, Any, Any] | str:
    if isinstance(entry, str):
        return entry, None, None
    if isinstance(entry, Mapping) and "op" in entry:
        try:
            long = _EntryLong.model_validate(entry)
        except pydantic.ValidationError as exc:
            return "; ".join(_describe_error(e) for e in exc.errors())
        return long.op, long.args, long.policy
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((name, args),) = entry.items()
        return str(name), args, None
    return (
        "an operator entry is {Name: {args}} or {op: Name, args: {...}, policy: {...}}, "
        f"got {entry!r}"
    )


def _build_entry(role: str, i: int, entry: Any, problems: list[str]) -> Operator | None:
    where = f"{role}[{i}]"
    parsed = _parse_entry(entry)
    if isinstance(parsed, str):
        problems.append(f"{where}: {parsed}")
        return None
    name, args, policy = parsed
    try:
        cls = get_operator(name)
    except FlightError as exc:
        problems.append(f"{where}: {exc}")
        return None
    where = f"{where} ({name})"
    is_source = issubclass(cls, SourceOperator)
    if role in ("includes", "excludes") and not is_source:
        problems.append(f"{where}: {role} take source operators; {name} is a {cls.kind} operator")
        return None
    if role == "steps" and is_source:
        problems.append(f"{where}: {name} is a source; put it under includes or excludes")
        return None
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        problems.append(f"{where}: arguments must be a mapping of field: value, got {args!r}")
        return None
    try:
        validated = cls.args_model().model_validate(dict(args))
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{where}.{_describe_error(err)}")
        return None
    checked_policy: dict[str, Any] = {}
    if policy is not None:
        if not is_source:
            problems.append(f"{where}.policy: only sources have a policy")
            return None
        try:
            checked_policy = _PolicyOverrides.model_validate(policy).model_dump(exclude_unset=True)
        except pydantic.ValidationError as exc:
            for err in exc.errors():
                problems.append(f"{where}.policy.{_describe_error(err)}")
            return None
    try:
        op = cls(**{k: getattr(validated, k) for k in contract_of(cls).field_names})
    except (OperatorArgumentError, FlightError) as exc:
        problems.append(f"{where}: {exc}")
        return None
    if checked_policy:
        assert isinstance(op, SourceOperator)
        op = op.with_policy(**checked_policy)
    return op


def _entry(op: Operator) -> Any:
    args = op.non_default_args()
    policy = op.policy_overrides() if isinstance(op, SourceOperator) else {}
    if policy:
        out: dict[str, Any] = {"op": op.name}
        if args:
            out["args"] = args
        out["policy"] = policy
        return out
    return {op.name: args}


def pipeline_to_config(pipeline: Pipeline) -> dict[str, Any]:
    """See :meth:`Pipeline.to_config`."""
    imports = list(pipeline.imports)
    covered = {Path(i).stem if _is_file_import(i) else i for i in imports}
    for op in pipeline.operators():
        module = type(op).__module__
        if not module.startswith("flight.") and module != "__main__" and module not in covered:
            imports.append(module)
            covered.add(module)
    out: dict[str, Any] = {"name": pipeline.name, "item_type": pipeline.item_type}
    if pipeline.description:
        out["description"] = pipeline.description
    if imports:
        out["imports"] = imports
    defaults = {k: v for k, v in pipeline.source_defaults.items() if k in POLICY_FIELDS}
    if defaults:
        out["defaults"] = defaults
    if pipeline.context is not None:
        out["context"] = {f.name: field_config(f) for f in pipeline.context}
    if pipeline.schema is not None:
        out["schema"] = dict(pipeline.schema)
    if pipeline.canary is not None:
        out["canary"] = dict(pipeline.canary)
    out["includes"] = [_entry(op) for op in pipeline.includes]
    if pipeline.excludes:
        out["excludes"] = [_entry(op) for op in pipeline.excludes]
    if pipeline.steps:
        out["steps"] = [_entry(op) for op in pipeline.steps]
    if pipeline.return_cols is not None:
        out["return_cols"] = list(pipeline.return_cols)
    return out


def dump_config(pipeline: Pipeline, path: str | os.PathLike[str]) -> None:
    """Write ``pipeline.to_config()`` as YAML, or JSON when the file ends in ``.json``."""
    p = Path(path)
    config = pipeline_to_config(pipeline)
    if p.suffix.lower() == ".json":
        p.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    else:
        p.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
