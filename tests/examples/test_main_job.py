"""The main job (`scripts/main`) as a user runs it: `sos server` with the local runtime, the
MovieLens example built with `sos build`, two revisions of one artifact (v1, v2), a 90/10
split with a tag, requests answered by both, the per-operator log of one; then a second run
on the same data dir (nothing duplicated) that serves until Ctrl-C and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import movielens_operators as ml
import pytest

from sos import Client

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not (ml.data_dir() / "ratings.csv").is_file(), reason="MovieLens data not found"
    ),
]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PORT")}
    # free ports (never assume 8700/8080 are free), state in a folder of the test's own
    env.update(SOS_PORT="0", SOS_ROUTER_PORT="0", SOS_DATA_DIR=str(data_dir), COLUMNS="160")
    env["MOVIELENS_DIR"] = str(ml.data_dir())
    return env


def _instances(data_dir: Path) -> list[int]:
    marker = f"SOS_RUNTIME={(data_dir / 'runtime').resolve()}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_main_job_deploys_two_revisions_splits_traffic_and_runs_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "sos-data"
    first = subprocess.run(
        [str(REPO / "scripts" / "main"), "--exit"],
        capture_output=True,
        text=True,
        timeout=840,
        env=_env(data_dir),
        cwd=REPO,
        check=False,
    )
    out = first.stdout
    assert first.returncode == 0, out[-4000:] + first.stderr[-3000:]
    assert "$ sos build examples/movielens" in out
    assert "$ sos deploy examples/movielens/deploy.py" in out
    assert "$ MOVIELENS_VERSION=v2 sos deploy examples/movielens/deploy.py" in out
    assert "$ sos traffic movielens 1=90 2=10@canary" in out
    # 20 requests through the router at 90/10: the split is exact, and each revision answers
    # with its own pipeline (Terminator 2 is v1's first pick for user 1, Casablanca v2's)
    assert "00001 served 18 of 20 (90%)" in out
    assert "00002 served 2 of 20 (10%)" in out
    assert "Terminator 2: Judgment Day (1991)" in out
    assert "Casablanca (1942)" in out
    # the per-operator log of the v2 request, read back through `sos logs`
    assert re.search(r"SimilarToRecent\s+SimilarToRecent\(n=300, recent=10\) returned", out)
    assert "AlreadyRated() returned 232 items to exclude" in out
    assert "Returning 10 items with mean(score)=" in out
    # where to look
    assert re.search(r"Web UI\s+http://127\.0\.0\.1:\d+/ui/", out)
    assert "cat " + str(data_dir / "admin-token") in out
    assert re.search(r"http://movielens\.localhost:\d+/explorer/\?a=recommend_v1", out)
    assert not _instances(data_dir), "--exit must stop the instances"

    # A second run on the same data dir: nothing is pushed or deployed twice; it serves
    # until Ctrl-C, then stops the server and its instances.
    second = subprocess.Popen(
        [str(REPO / "scripts" / "main")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(data_dir),
        cwd=REPO,
    )
    lines: list[str] = []
    assert second.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(second.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600
        while not any("Serving until Ctrl-C" in line for line in lines):
            assert second.poll() is None, "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(0.2)
        running = _instances(data_dir)
        assert running, "the revisions run while the main job serves"
        token = (data_dir / "admin-token").read_text().strip()
        url = re.search(r"API (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert url is not None
        with Client(url.group(1), token) as client:
            assert [r.number for r in client.list_revisions("movielens")] == [1, 2]
    finally:  # Ctrl-C, also when an assertion failed: a failed test leaves no server behind
        second.send_signal(signal.SIGINT)
        try:
            code = second.wait(60)
        except subprocess.TimeoutExpired:
            second.kill()
            code = second.wait()
    assert code == 0
    reader.join(10)
    out = "".join(lines)
    assert "picked up the last run: service movielens with 2 revisions" in out
    assert "nothing to push" in out
    assert out.count("(the same spec): reused, nothing to deploy") == 2
    assert "the traffic is split like this already: nothing to change" in out
    assert "00001 served 18 of 20 (90%)" in out
    assert "stopped sos server and its instances" in out
    deadline = time.monotonic() + 30
    while _instances(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _instances(data_dir), "Ctrl-C must stop the instances too"
