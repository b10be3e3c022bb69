"""Sticky splits and `sos shadow report` end to end: a real `sos server --backend local`
(each data path), the client, the CLI and the router, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sos_harness import TOKEN, ServerProcess, publish, until

from sos import traffic
from sos.client import Client
from sos.models import RevisionSpec, ServiceSpec, TrafficRoute

pytestmark = pytest.mark.slow


def sos(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "sos"), *args],
        env={**os.environ, "SOS_URL": server.url, "SOS_TOKEN": TOKEN, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sticky_split_and_shadow_report_through_a_real_server(
    tmp_path: Path,
    hello_pyz: Path,
    servers: list[ServerProcess],
    data_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOS_ROUTER", data_path)
    server = ServerProcess(tmp_path / "data", 0)
    servers.append(server)
    router = f"http://127.0.0.1:{server.router_port}"
    with Client(server.url, TOKEN) as client:
        publish(client, hello_pyz, "hello-py", "python")
        client.apply(ServiceSpec(name="recs", team="recs"))
        for items in ("a,b,c,d", "b,a,c,x"):
            spec = {
                "artifact": {"name": "hello-py", "version": "v1"},
                "env_vars": [{"id": "HELLO_ITEMS", "value": items}],
                "autoscaling": {"min_scale": 0},
            }
            client.create_revision("recs", RevisionSpec.model_validate(spec))
        client.wait_ready("recs", 1, timeout=60)

        # sticky: the same user, the same revision; the rule of sos.traffic
        done = sos(server, "traffic", "recs", "1=50", "2=50", "--split-by", "header:X-User-Id")
        assert done.returncode == 0, done.stderr
        client.wait_ready("recs", 2, timeout=60)
        with httpx.Client(headers={"Host": "recs.localhost"}, timeout=30) as http:
            until(lambda: http.get(router).headers.get("sos-revision") == "recs-00002", 30, "2")
            ranges = traffic.sticky_ranges({"recs-00001": 50, "recs-00002": 50})
            for user in (f"u{i}" for i in range(40)):
                got = {
                    http.get(router, headers={"X-User-Id": user}).headers["sos-revision"]
                    for _ in range(3)
                }
                assert got == {traffic.sticky_revision(ranges, user)}

        # revision 2 shadows: kept running with no share of its own, every request mirrored
        client.set_traffic("recs", TrafficRoute.model_validate({"routes": [
            {"revision": "recs-00001", "percent": 100}]}))  # fmt: skip
        done = sos(server, "shadow", "recs", "2=100")
        assert done.returncode == 0, done.stderr
        with httpx.Client(headers={"Host": "recs.localhost"}, timeout=30) as http:
            until(lambda: http.get(router + "/recs").headers["sos-revision"] == "recs-00001", 30)
            answers = Counter(http.get(router + "/recs").status_code for _ in range(20))
        assert answers == {200: 20}

        def compared() -> int:
            report = client.shadow_report("recs")
            return report.pairs[0].items_compared if report.pairs else 0

        until(lambda: compared() >= 20, 30, "the comparisons")
        report = sos(server, "shadow", "report", "recs", "--json")
        assert report.returncode == 0, report.stderr
        pair = json.loads(report.stdout)["pairs"][0]
        assert (pair["primary"], pair["shadow"]) == ("recs-00001", "recs-00002")
        assert pair["overlap_at_k"] == 0.3 and pair["top1_agreement"] == 0.0
        assert pair["status_agreement"] == 1.0 and pair["shadow_errors"] == 0
        table = sos(server, "shadow", "report", "recs")
        assert table.returncode == 0 and "00001 -> 00002" in table.stdout, table.stdout
