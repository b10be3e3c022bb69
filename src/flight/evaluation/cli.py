"""``flight eval``: offline evaluation of pipeline configs on logged interactions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flight.errors import FlightError
from flight.pipeline import Pipeline

__all__ = ["eval_command"]


def _fail(message: str) -> typer.Exit:
    """The ``flight`` command's usage error (exit 2); imported when used, since
    :mod:`flight.cli` imports this module."""
    from flight.cli import _fail as usage_error

    return usage_error(message)


def _load_all(paths: list[Path]) -> list[Pipeline]:
    """Every config, each loaded as ``flight run`` loads one (exit 2 naming the problem)."""
    from flight.cli import _load

    return [_load(path) for path in paths]


def _stdout() -> Console:
    """Standard output: the terminal as it is, or a wide console when piped, so that the
    tables keep their columns in a log or a file."""
    shown = Console()
    return shown if shown.is_terminal else Console(width=200)


def eval_command(
    configs: Annotated[
        list[Path],
        typer.Argument(
            help="Pipeline configs to compare; the first is the baseline.", show_default=False
        ),
    ],
    interactions: Annotated[
        Path,
        typer.Option(
            "--interactions",
            help="CSV of interactions (one row per user and item).",
            show_default=False,
        ),
    ],
    user: Annotated[str, typer.Option("--user", help="Column holding the user id.")] = "user",
    item: Annotated[str, typer.Option("--item", help="Column holding the item id.")] = "item",
    time_col: Annotated[str, typer.Option("--time", help="Column holding the time.")] = "timestamp",
    user_key: Annotated[
        str, typer.Option("--user-key", help="Context key the pipelines take the user id in.")
    ] = "user_id",
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Interaction data set the operators read (flight.register_interactions); "
            "default: the file's name without .csv.",
        ),
    ] = None,
    holdout: Annotated[
        int, typer.Option("--holdout", help="Last interactions held out per user.")
    ] = 5,
    min_train: Annotated[
        int, typer.Option("--min-train", help="Interactions a user must keep to train on.")
    ] = 1,
    rating: Annotated[
        str | None, typer.Option("--rating", help="Column holding a rating (with --min-rating).")
    ] = None,
    min_rating: Annotated[
        float | None,
        typer.Option("--min-rating", help="Held-out items rated below this are not hits."),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="List length scored.")] = 10,
    diversity_by: Annotated[
        str | None,
        typer.Option(
            "--diversity-by", help="Item attribute for intra-list diversity (e.g. main_genre)."
        ),
    ] = None,
    context: Annotated[
        list[str] | None,
        typer.Option("--context", "-c", help="Extra context KEY=VALUE for every run (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for the outputs.")] = Path(
        "eval-out"
    ),
    rounds: Annotated[int, typer.Option("--rounds", help="Bootstrap rounds.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
) -> None:
    """Evaluate pipeline configs offline: hold out each user's last interactions, run every
    pipeline for every user on the rest, score the top k, compare against the first."""
    from flight.cli import parse_context
    from flight.evaluation import EvalInputError, evaluate, split_by_time, write_outputs

    console = Console(stderr=True)
    extra = parse_context(context or [])
    if not interactions.is_file():
        raise _fail(f"--interactions {interactions}: no such file")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _fail(
            "flight eval draws its report with matplotlib: pip install 'flight-sos[eval]'"
        ) from None
    pipelines = [(pipeline.name, pipeline) for pipeline in _load_all(configs)]
    started = time.perf_counter()
    try:
        frame = pd.read_csv(interactions)
    except (ValueError, OSError) as exc:
        raise _fail(f"--interactions {interactions}: cannot read it as CSV: {exc}") from None
    try:
        split = split_by_time(
            frame,
            user=user,
            item=item,
            time=time_col,
            holdout=holdout,
            min_train=min_train,
            rating=rating,
            min_rating=min_rating,
        )
    except EvalInputError as exc:
        raise _fail(f"{interactions}: {exc}") from None
    console.print(f"split: {split.rule()}")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks = {name: bar.add_task(name, total=len(split.users)) for name, _ in pipelines}

        def progress(name: str, done: int) -> None:
            bar.update(tasks[name], completed=done)

        try:
            evaluation = asyncio.run(
                evaluate(
                    pipelines,
                    split,
                    dataset=dataset or interactions.stem,
                    user_key=user_key,
                    k=k,
                    context=extra,
                    diversity_by=diversity_by,
                    rounds=rounds,
                    seed=seed,
                    progress=progress,
                )
            )
        except FlightError as exc:
            raise _fail(str(exc)) from None
    paths = write_outputs(evaluation, out)
    _print_table(_stdout(), evaluation)
    failed = [run for run in evaluation.runs if run.errors]
    for run in failed:
        message = run.errors.most_common(1)[0][0]
        console.print(
            f"[red]error:[/] pipeline {run.name} failed for {sum(run.errors.values())} of "
            f"{len(split.users)} users (its figures count those as empty lists); most often: "
            f"{message}",
            markup=True,
            highlight=False,
        )
    console.print(
        f"{len(split.users)} users x {len(pipelines)} pipelines in "
        f"{time.perf_counter() - started:.1f} s; wrote " + ", ".join(str(p) for p in paths.values())
    )
    if failed:
        raise typer.Exit(1)


def _print_table(console: Console, evaluation: Any) -> None:
    from flight.evaluation.metrics import Interval

    k = evaluation.k
    keys = [f"ndcg@{k}", f"recall@{k}", f"precision@{k}", f"map@{k}", "coverage"]
    first = evaluation.metrics[evaluation.baseline]
    keys += [key for key in ("diversity", "novelty", "empty_rate") if key in first]
    table = Table(title=f"flight eval: top {k}, mean over {len(evaluation.split.users)} users")
    table.add_column("pipeline")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("p50/p99 ms", justify="right")
    for run in evaluation.runs:
        figures = evaluation.metrics[run.name]
        cells = []
        for key in keys:
            value = figures[key]
            number = value.value if isinstance(value, Interval) else value
            text = f"{number:.4f}" if isinstance(number, float) else str(number)
            diff = evaluation.compared.get(run.name, {}).get(key)
            if diff is not None:
                mark = "[green]▲[/]" if diff.low > 0 else "[red]▼[/]" if diff.high < 0 else "≈"
                text += f" {mark}"
            cells.append(text)
        cells.append(f"{figures['latency_p50_ms']:.1f}/{figures['latency_p99_ms']:.1f}")
        table.add_row(run.name, *cells)
    console.print(table)
    console.print(
        f"▲/▼: better/worse than {evaluation.baseline} (95% paired bootstrap interval "
        "excludes 0); ≈: no real difference. Intervals in metrics.json and report.html."
    )


def replay_command(
    log: Annotated[
        Path, typer.Argument(help="A request log (flight serve --request-log).", show_default=False)
    ],
    against: Annotated[
        list[Path],
        typer.Option(
            "--against", help="Config to rerun the requests with (repeatable).", show_default=False
        ),
    ],
    k: Annotated[int, typer.Option("--k", help="List length compared.")] = 10,
    pipeline_name: Annotated[
        str | None, typer.Option("--pipeline", help="Only the requests this pipeline served.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many requests.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for the outputs.")] = Path(
        "replay-out"
    ),
) -> None:
    """Rerun the requests of a request log through configs and compare their lists with
    what was served: overlap, rank-biased overlap, top item changed, empty results, latency."""
    from flight.evaluation.replay import read_log, replay, write_replay
    from flight.evaluation.split import EvalInputError

    if k < 1:
        raise _fail(f"--k must be at least 1, got {k}")
    try:
        records = read_log(log, pipeline=pipeline_name, limit=limit)
    except EvalInputError as exc:
        raise _fail(str(exc)) from None
    pipelines: list[tuple[str, Pipeline]] = []
    for path, loaded in zip(against, _load_all(against), strict=True):
        pipelines.append((loaded.name if loaded.name not in dict(pipelines) else str(path), loaded))
    result = asyncio.run(replay(records, pipelines, k=k))
    paths = write_replay(result, out)
    from flight.evaluation.metrics import Interval

    console = _stdout()
    table = Table(
        title=f"flight replay: {result.requests} requests, top {k} against what was served"
    )
    keys = [f"overlap@{k}", f"rbo@{k}", "top1_changed", "empty_rate"]
    table.add_column("config")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("p50/p99 ms", justify="right")
    table.add_column("errors", justify="right")
    for name, figures in result.figures.items():
        cells = [
            f"{figures[key].value:.4f}" if isinstance(figures[key], Interval) else str(figures[key])
            for key in keys
        ]
        latency = f"{figures['latency_p50_ms']:.1f}/{figures['latency_p99_ms']:.1f}"
        table.add_row(name, *cells, latency, str(figures["errors"]))
    console.print(table)
    Console(stderr=True).print(
        f"served p50 latency {result.served_latency_p50_ms} ms; wrote "
        + ", ".join(map(str, paths.values()))
    )
    if any(figures["errors"] for figures in result.figures.values()):
        first = next(f for f in result.figures.values() if f["errors"])
        typer.echo(
            f"error: some reruns failed, e.g. {next(iter(first['error_examples']))}", err=True
        )
        raise typer.Exit(1)
