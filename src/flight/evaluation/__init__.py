"""Offline evaluation of pipelines: ``flight eval`` (see ``docs/flight/evaluation.md``).

Split interactions per user by time (:func:`split_by_time`), run every pipeline for every
evaluated user while the operators see only the training split (:mod:`flight.data`), and
score the top ``k`` against the held-out items with bootstrap intervals (:func:`evaluate`);
:func:`write_outputs` writes ``metrics.json``, ``recs.jsonl``, ``heldout.csv`` and
``report.html``.
"""

from flight.evaluation.metrics import Interval, ListMetrics, list_metrics
from flight.evaluation.report import render_html, write_outputs
from flight.evaluation.run import Evaluation, PipelineRun, evaluate, execute_many
from flight.evaluation.split import EvalInputError, Split, split_by_time

__all__ = [
    "EvalInputError",
    "Evaluation",
    "Interval",
    "ListMetrics",
    "PipelineRun",
    "Split",
    "evaluate",
    "execute_many",
    "list_metrics",
    "render_html",
    "split_by_time",
    "write_outputs",
]
