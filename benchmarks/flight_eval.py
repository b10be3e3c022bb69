"""`flight eval` on the MovieLens example: 3 pipelines (v1, v2, v3 with its ALS model) x all
610 users, against a careful hand-written loop over the same pipelines, in one run.

    .venv/bin/python benchmarks/flight_eval.py [--rounds 2]

- ``model``: training v3's ALS model on the training split (``movielens_model.train``);
- ``flight eval``: the whole command as a user runs it (a subprocess: reading the CSV, the
  split, the runs under the training view, metrics with 1000-round bootstrap intervals, the
  four outputs with the HTML report's plots); the issue's goal is under 60 s on 2 cores;
- ``hand loop``: what an expert would write without it, in-process: the same split, then
  ``await pipeline.execute(user_id=u)`` for every user and pipeline while the ratings view
  is the training split, and recall@10 by hand. No intervals, no report: the floor.

It prints the times and the ratio ``flight eval / hand loop`` (the price of everything the
command adds, process start included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "movielens"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault(
    "MOVIELENS_DIR", str((ROOT.parent / "shared" / "data" / "movielens-small").resolve())
)

import movielens_model as mm  # noqa: E402
import movielens_operators as ml  # noqa: E402

import flight  # noqa: E402
from flight.evaluation import split_by_time  # noqa: E402

NAMES = ("recommend_v1", "recommend_v2", "recommend_v3")


def configs(model: Path, work: Path) -> list[Path]:
    import yaml

    out = []
    for name in NAMES:
        raw = yaml.safe_load((EXAMPLE / "pipelines" / f"{name}.yaml").read_text())
        raw["imports"] = [str((EXAMPLE / "pipelines" / i).resolve()) for i in raw["imports"]]
        for entry in [*raw["includes"], *raw["steps"]]:
            for args in entry.values():
                if isinstance(args, dict) and "model" in args:
                    args["model"] = str(model)
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        out.append(path)
    return out


def run_cli(paths: list[Path], work: Path) -> float:
    ratings = Path(os.environ["MOVIELENS_DIR"]) / "ratings.csv"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from flight.cli import main; main()", "eval", *map(str, paths),
         "--interactions", str(ratings), "--user", "userId", "--item", "movieId",
         "--time", "timestamp", "--holdout", "5", "--k", "10", "--diversity-by", "main_genre",
         "--out", str(work / "out")],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


async def hand_loop(paths: list[Path]) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    ratings = ml.read_ratings(ml.data_dir())
    split = split_by_time(ratings, user="userId", item="movieId", time="timestamp", holdout=5)
    recall: dict[str, float] = {}
    with flight.data.evaluating({"ratings": split.train}):
        for path in paths:
            pipeline = flight.Pipeline.from_config(path)
            hits = []
            for user in split.users:
                result = await pipeline.execute(user_id=int(user), return_cols=["movieId"])
                top = set(result.items["movieId"].tolist()[:10])
                hits.append(len(top & split.relevant[user]) / len(split.relevant[user]))
            recall[pipeline.name] = sum(hits) / len(hits)
    return time.perf_counter() - started, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        mm.train(ml.read_ratings(ml.data_dir()), work / "als", holdout=5)
        print(f"model: ALS trained on the training split in {time.perf_counter() - started:.1f} s")
        paths = configs(work / "als", work)
        cli, hand = [], []
        for _ in range(args.rounds):
            cli.append(run_cli(paths, work))
            seconds, recall = asyncio.run(hand_loop(paths))
            hand.append(seconds)
        print("hand loop recall@10: " + ", ".join(f"{k} {v:.4f}" for k, v in recall.items()))
        c, h = statistics.median(cli), statistics.median(hand)
        print(
            f"flight eval (3 pipelines x 610 users, report included): {c:.1f} s "
            f"(rounds: {', '.join(f'{x:.1f}' for x in cli)}); goal < 60 s"
        )
        print(
            f"hand loop (same runs, recall only):                    {h:.1f} s "
            f"(rounds: {', '.join(f'{x:.1f}' for x in hand)})"
        )
        print(f"ratio flight eval / hand loop: {c / h:.2f}x")


if __name__ == "__main__":
    main()
