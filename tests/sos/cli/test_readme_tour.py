"""The README's SOS tour, command for command, as a user runs it: a real `sos server` (local
backend), `sos build --push` of the example project, `sos deploy` of the example files, and
requests through the router that show the 90/10 canary split and the tag URL."""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

EXAMPLES = Path(__file__).parents[3] / "docs" / "sos" / "examples"
SOS = [sys.executable, "-c", "from sos.cli import main; main()"]


@pytest.mark.slow
def test_readme_tour_builds_deploys_splits_and_rolls_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOS_")}
    env["SOS_DATA_DIR"] = str(tmp_path / "data")
    env["SOS_HOME"] = str(tmp_path / "home")  # sos build records builds here
    env["SOS_STOP_ON_EXIT"] = "1"  # the test's instances stop with its server
    server = subprocess.Popen(
        [*SOS, "server", "--port", "0", "--router-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        output = ""
        deadline = time.monotonic() + 60
        while "Application startup complete" not in output and time.monotonic() < deadline:
            output += server.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output)
        assert match, output
        env["SOS_URL"] = match[1]
        env["SOS_TOKEN"] = (tmp_path / "data" / "admin-token").read_text().strip()

        def sos(*args: str) -> str:
            done = subprocess.run(
                [*SOS, *args], env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        project = tmp_path / "sfix-service"
        shutil.copytree(EXAMPLES / "sfix-service", project)
        assert "pushed sfix_service 0.0.16" in sos("build", str(project), "--push")
        assert "traffic: 00001=100" in sos("deploy", str(EXAMPLES / "sfix-service.py"))
        canary = sos("deploy", str(EXAMPLES / "sfix-service-canary.yaml"))
        assert "traffic: 00002=10@canary 00001=90" in canary
        url = re.search(r"url: (http://\S+)", canary)
        assert url, canary
        router = f"http://127.0.0.1:{urlsplit(url[1]).port}"

        seen: collections.Counter[str] = collections.Counter()
        with httpx.Client(base_url=router, timeout=10) as http:
            for _ in range(50):
                answer = http.get("/similar/1", headers={"Host": "sfix-service.localhost"})
                assert answer.status_code == 200
                seen[answer.json()["revision"]] += 1
            tagged = http.get("/", headers={"Host": "canary-sfix-service.localhost"})
            assert tagged.json() == {
                "service": "sfix-service",
                "revision": "sfix-service-00002",
                "log_level": "debug",
            }
            assert seen.keys() == {"sfix-service-00001", "sfix-service-00002"}
            assert 3 <= seen["sfix-service-00002"] <= 7  # 10% of 50, give or take
            assert "traffic is now 00001=100" in sos("rollback", "sfix-service")
            after = http.get("/similar/1", headers={"Host": "sfix-service.localhost"})
            assert after.json()["revision"] == "sfix-service-00001"
        assert "traffic.rollback" in sos("history", "sfix-service")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
