"""The main job (`scripts/main`) as a user runs it: the example served, two requests and
their answers, and the service's log of the last one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import movielens_operators as ml
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(
    not (ml.data_dir() / "ratings.csv").is_file(), reason="MovieLens data not found"
)
def test_main_job_serves_the_example_and_shows_requests_and_answers() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PORT")}
    proc = subprocess.run(
        [str(REPO / "scripts" / "main")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "flight serve movielens_app:app" in out
    assert "/recs/for_user?user_id=1&version=v1" in out
    assert "/recs/for_user?user_id=1&version=v2" in out
    assert out.count("HTTP 200") == 2
    assert "Terminator 2: Judgment Day (1991)" in out  # a v1 pick for user 1
    assert "Casablanca (1942)" in out  # a v2 pick for user 1
    assert "AlreadyRated() returned 232 items to exclude" in out  # from the service's log
    assert "Returning 10 items with mean(score)=" in out
