"""``flight eval``'s outputs: ``metrics.json``, ``recs.jsonl``, ``heldout.csv``, ``report.html``."""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

from flight.evaluation.metrics import Interval
from flight.evaluation.run import Evaluation

__all__ = ["write_outputs"]

ACCURACY = ("ndcg", "recall", "precision", "map")


def write_outputs(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    """Write every output into ``out`` (created if needed); returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "recs": out / "recs.jsonl",
        "heldout": out / "heldout.csv",
        "report": out / "report.html",
    }
    payload = evaluation.to_json()
    payload_meta = {
        "_settings": {
            **evaluation.settings,
            "k": evaluation.k,
            "split": evaluation.split.rule(),
            "catalogue_size": evaluation.catalogue_size,
            "seconds": round(evaluation.seconds, 3),
        }
    }
    paths["metrics"].write_text(json.dumps({**payload, **payload_meta}, indent=2) + "\n")
    with paths["recs"].open("w") as f:
        for run in evaluation.runs:
            for user in evaluation.split.users:
                items = [_plain(i) for i in run.lists.get(user, [])]
                f.write(
                    json.dumps({"pipeline": run.name, "user": _plain(user), "items": items}) + "\n"
                )
    split = evaluation.split
    held = split.test[[split.user, split.item]].rename(
        columns={split.user: "user", split.item: "item"}
    )
    held.to_csv(paths["heldout"], index=False)
    paths["report"].write_text(render_html(evaluation))
    return paths


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _cell(value: Any) -> str:
    if isinstance(value, Interval):
        return f"{_fmt(value.value)}<br><small>{_fmt(value.low)} … {_fmt(value.high)}</small>"
    return html.escape(str(value))


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _plots(evaluation: Evaluation) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [run.name for run in evaluation.runs]
    k = evaluation.k
    plots: list[tuple[str, str]] = []

    fig, axes = plt.subplots(1, len(ACCURACY), figsize=(3.2 * len(ACCURACY), 3.2))
    for ax, metric in zip(axes, ACCURACY, strict=True):
        key = f"{metric}@{k}"
        values = [evaluation.metrics[n][key] for n in names]
        centre = [v.value for v in values]
        errors = [
            [max(v.value - v.low, 0) for v in values],
            [max(v.high - v.value, 0) for v in values],
        ]
        ax.bar(range(len(names)), centre, yerr=errors, capsize=4, color="#4477aa")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(key)
    fig.suptitle("Accuracy per pipeline (95% bootstrap intervals)")
    plots.append(("Accuracy", _svg(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in names:
        ax.plot(range(1, k + 1), evaluation.recall_by_k[name], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title("Recall by list length")
    ax.legend(fontsize=8)
    plots.append(("Recall by k", _svg(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    data = [evaluation.popularity[n] for n in names]
    if any(len(d) for d in data):
        ax.boxplot([d if len(d) else [0] for d in data], tick_labels=names)
        ax.set_yscale("symlog")
    ax.set_ylabel("training users who rated the item")
    ax.set_title("Popularity of recommended items")
    plots.append(("Popularity", _svg(fig)))
    plt.close(fig)
    return plots


def render_html(evaluation: Evaluation) -> str:
    """The report page: the figures with intervals, the comparison, and the plots."""
    names = [run.name for run in evaluation.runs]
    keys = [
        key for key, value in evaluation.metrics[names[0]].items() if isinstance(value, Interval)
    ]
    header = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    rows = []
    for name in names:
        figures = evaluation.metrics[name]
        cells = "".join(f"<td>{_cell(figures[key])}</td>" for key in keys)
        latency = f"{figures['latency_p50_ms']} / {figures['latency_p99_ms']}"
        rows.append(
            f"<tr><th>{html.escape(name)}</th>{cells}<td>{latency}</td>"
            f"<td>{figures['errors']}</td></tr>"
        )
    comparison = []
    for name, diffs in evaluation.compared.items():
        diff_cells: list[str] = []
        for iv in diffs.values():
            verdict = "real" if iv.excludes_zero() else "not distinguishable from 0"
            cls = "up" if iv.low > 0 else "down" if iv.high < 0 else "flat"
            diff_cells.append(
                f'<td class="{cls}">{iv.value:+.4f}<br><small>{iv.low:+.4f} … {iv.high:+.4f}'
                f"<br>{verdict}</small></td>"
            )
        comparison.append(f"<tr><th>{html.escape(name)}</th>{''.join(diff_cells)}</tr>")
    comparison_keys = next(iter(evaluation.compared.values()), {})
    comparison_head = "".join(f"<th>Δ {html.escape(key)}</th>" for key in comparison_keys)
    plots = "".join(
        f"<section><h2>{html.escape(title)}</h2>{svg}</section>"
        for title, svg in _plots(evaluation)
    )
    empties = "".join(
        f"<li><b>{html.escape(run.name)}</b>: "
        + "; ".join(f"{html.escape(r)} ({n})" for r, n in run.empty_reasons.most_common(5))
        + "</li>"
        for run in evaluation.runs
        if run.empty_reasons
    )
    comparison_html = (
        f"<h2>Against {html.escape(evaluation.baseline)} (paired, per user)</h2>"
        f"<table><tr><th>pipeline</th>{comparison_head}</tr>{''.join(comparison)}</table>"
        if comparison
        else ""
    )
    title = html.escape(", ".join(names))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flight eval: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .35rem .6rem; text-align: right; vertical-align: top; }}
th {{ background: #f4f4f4; }} small {{ color: #666; }}
td.up {{ background: #e6f4ea; }} td.down {{ background: #fce8e6; }}
section svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Offline evaluation</h1>
<p>{html.escape(evaluation.split.rule())}. Top {evaluation.k} per user; catalogue of
{evaluation.catalogue_size} items; {evaluation.seconds:.1f} s.</p>
<h2>Figures (mean over users, 95% bootstrap interval)</h2>
<table id="metrics"><tr><th>pipeline</th>{header}<th>latency p50 / p99 ms</th><th>errors</th></tr>
{"".join(rows)}</table>
{comparison_html}
{f"<h2>Empty results</h2><ul>{empties}</ul>" if empties else ""}
{plots}
</body></html>
"""
