"""Replay of served traffic: ``flight replay LOG --against CONFIG...``.

Reruns the contexts of a request log (``flight serve --request-log``) through each config
and compares its lists with what was served, request by request:

- ``overlap@k``: share of the served top k that the config also returns in its top k;
- ``rbo@k``: rank-biased overlap (p = 0.9) of the two top-k lists, normalised so that
  identical lists score 1 (weights the top of the list most);
- ``top1_changed``: share of requests whose first item differs;
- ``empty_rate``, ``errors``, ``latency_p50_ms``/``latency_p99_ms`` of the rerun, and the
  served latency from the log for comparison.

Means come with bootstrap intervals over requests, like ``flight eval``.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flight.evaluation.metrics import Interval, bootstrap_mean, flat_figures
from flight.evaluation.split import EvalInputError
from flight.pipeline import Pipeline

__all__ = ["Replay", "rbo", "read_log", "replay", "write_replay"]

RBO_P = 0.9


def read_log(
    path: Path, *, pipeline: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The records of a request log (only ``pipeline``'s, when given), oldest first."""
    if not path.is_file():
        raise EvalInputError(f"request log {path}: no such file")
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise EvalInputError(f"{path}:{number}: not a JSON line ({exc})") from None
            if not isinstance(record, dict) or not isinstance(record.get("context"), dict):
                raise EvalInputError(f"{path}:{number}: not a request log record")
            if pipeline is None or record.get("pipeline") == pipeline:
                records.append(record)
            if limit is not None and len(records) >= limit:
                break
    if not records:
        which = f" of pipeline {pipeline!r}" if pipeline else ""
        raise EvalInputError(f"request log {path} has no record{which}")
    return records


def rbo(served: Sequence[Any], other: Sequence[Any], k: int, p: float = RBO_P) -> float:
    """Rank-biased overlap of two top-k lists, normalised to 1 for identical lists."""
    a, b = list(served)[:k], list(other)[:k]
    if not a and not b:
        return 1.0
    seen_a: set[Any] = set()
    seen_b: set[Any] = set()
    total = weight = 0.0
    for depth in range(1, k + 1):
        if depth <= len(a):
            seen_a.add(a[depth - 1])
        if depth <= len(b):
            seen_b.add(b[depth - 1])
        w = p ** (depth - 1)
        total += w * len(seen_a & seen_b) / depth
        weight += w
    return total / weight


@dataclasses.dataclass
class Replay:
    k: int
    requests: int
    figures: dict[str, dict[str, Any]]  # config name -> figures
    served_latency_p50_ms: float


async def replay(
    records: Sequence[Mapping[str, Any]], pipelines: Sequence[tuple[str, Pipeline]], *, k: int
) -> Replay:
    """Rerun every record's context through every pipeline and compare with the log."""
    figures: dict[str, dict[str, Any]] = {}
    for name, pipeline in pipelines:
        declared = {f.name for f in pipeline.context} if pipeline.context is not None else None
        overlap, ranked, changed, empty, latency = [], [], [], [], []
        errors: Counter[str] = Counter()
        for record in records:
            context = dict(record["context"])
            if declared is not None:  # what this config takes of the logged context
                context = {key: value for key, value in context.items() if key in declared}
            result = await pipeline.execute(return_cols=[pipeline.item_type], **context)
            served = list(record.get("items") or [])[:k]
            if result.error is not None:
                errors[f"{type(result.error).__name__}: {str(result.error)[:300]}"] += 1
            got = result.items[pipeline.item_type].tolist()[:k] if len(result.items) else []
            overlap.append(len(set(served) & set(got)) / k)
            ranked.append(rbo(served, got, k))
            changed.append(float(bool(served) and (not got or got[0] != served[0])))
            empty.append(float(not got))
            latency.append(result.elapsed_ms)
        figures[name] = {
            f"overlap@{k}": bootstrap_mean(overlap),
            f"rbo@{k}": bootstrap_mean(ranked),
            "top1_changed": bootstrap_mean(changed),
            "empty_rate": bootstrap_mean(empty),
            "latency_p50_ms": round(float(np.percentile(latency, 50)), 3),
            "latency_p99_ms": round(float(np.percentile(latency, 99)), 3),
            "errors": sum(errors.values()),
            "error_examples": dict(errors.most_common(3)),
        }
    served_latency = [float(r.get("latency_ms") or 0.0) for r in records]
    return Replay(k, len(records), figures, round(float(np.percentile(served_latency, 50)), 3))


def to_json(result: Replay) -> dict[str, Any]:
    out: dict[str, Any] = {"_settings": {"k": result.k, "requests": result.requests}}
    out["_served"] = {"latency_p50_ms": result.served_latency_p50_ms}
    for name, figures in result.figures.items():
        out[name] = flat_figures(figures)
    return out


def write_replay(result: Replay, out: Path) -> dict[str, Path]:
    """``replay.json`` and ``replay.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "replay.json", "html": out / "replay.html"}
    paths["json"].write_text(json.dumps(to_json(result), indent=2) + "\n")
    keys = [
        key for key, v in next(iter(result.figures.values())).items() if isinstance(v, Interval)
    ]
    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    rows = []
    for name, figures in result.figures.items():
        cells = "".join(
            f"<td>{figures[key].value:.4f}<br><small>{figures[key].low:.4f} … "
            f"{figures[key].high:.4f}</small></td>"
            for key in keys
        )
        rows.append(
            f"<tr><th>{html.escape(name)}</th>{cells}<td>{figures['latency_p50_ms']} / "
            f"{figures['latency_p99_ms']}</td><td>{figures['errors']}</td></tr>"
        )
    paths["html"].write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flight replay</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: .35rem .6rem;
text-align: right; }} th {{ background: #f4f4f4; }} small {{ color: #666; }}</style></head>
<body><h1>Replay of {result.requests} served requests</h1>
<p>Each config reran the logged contexts; its top {result.k} is compared with what was served
(served latency p50: {result.served_latency_p50_ms} ms). Mean over requests, 95% bootstrap
interval.</p>
<table id="replay"><tr><th>config</th>{head}<th>latency p50 / p99 ms</th><th>errors</th></tr>
{"".join(rows)}</table></body></html>
"""
    )
    return paths
