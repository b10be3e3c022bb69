"""The whole flow over real HTTP: `sos server` (local backend) as a process, the client,
the router (each data path), the activator, crash replacement, `sos logs` and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sos_harness import (
    TOKEN,
    ServerProcess,
    instances_of,
    publish,
    until,
)

from sos.client import Client
from sos.models import RevisionSpec, ServiceSpec

pytestmark = pytest.mark.slow


def test_deploy_split_scale_to_zero_crash_and_restart_over_real_http(
    tmp_path: Path,
    hello_pyz: Path,
    hello_go: Path,
    servers: list[ServerProcess],
    data_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOS_ROUTER", data_path)  # every server below uses this data path
    data = tmp_path / "data"
    # a server restart without downtime: this one leaves its instances running on Ctrl-C
    server = ServerProcess(data, 0, SOS_KEEP_INSTANCES="1")
    servers.append(server)
    router = f"http://127.0.0.1:{server.router_port}"

    def get(host: str, path: str = "/") -> httpx.Response:
        return httpx.get(router + path, headers={"Host": host}, timeout=30)

    with Client(server.url, TOKEN) as client:
        publish(client, hello_pyz, "hello-py", "python")  # what `sos push` does
        publish(client, hello_go, "hello-go", "go")
        client.apply(ServiceSpec(name="shop", team="recs"))
        one = {"artifact": {"name": "hello-py", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        client.create_revision("shop", RevisionSpec.model_validate(one))
        ready = client.wait_ready("shop", 1, timeout=60)
        assert ready.status.instances.ready == 1
        assert (
            client.get_service("shop").status.url == f"http://shop.localhost:{server.router_port}"
        )
        first = get("shop.localhost")
        assert first.status_code == 200 and first.headers["sos-revision"] == "shop-00001"
        assert get("localhost", "/s/shop/x").text.startswith("hello from shop-00001 path=/x")

        # a Go revision beside it, then a 70/30 split
        two = {"artifact": {"name": "hello-go", "version": "v1"}, "autoscaling": {"min_scale": 1}}
        client.create_revision("shop", RevisionSpec.model_validate(two))
        client.wait_ready("shop", 2, timeout=60)
        client.set_traffic("shop", {1: 70, 2: 30})
        until(lambda: get("shop.localhost").headers["sos-revision"] == "shop-00002", what="split")
        seen = Counter(get("shop.localhost").headers["sos-revision"] for _ in range(20))
        assert seen == {"shop-00001": 14, "shop-00002": 6}

        # a serverless revision behind a tag: it scales to zero, the activator wakes it
        three = {
            "artifact": {"name": "hello-py", "version": "v1"},
            # at zero 6 s after its last request (the shortest stable window)
            "autoscaling": {
                "min_scale": 0,
                "stable_window_seconds": 6,
                "scale_to_zero_grace_seconds": 1,
            },
        }
        client.create_revision("shop", RevisionSpec.model_validate(three))
        client.wait_ready("shop", 3, timeout=60)  # its initial instance answered
        assert len(instances_of("shop-00003", data)) == 1
        route = client.get_traffic("shop").model_dump()
        route["routes"].append({"revision": "shop-00003", "percent": 0, "tag": "cold"})
        client.set_traffic("shop", type(client.get_traffic("shop")).model_validate(route))
        until(lambda: not instances_of("shop-00003", data), 60, "scale to zero")

        def at_zero() -> bool:
            status = client.get_revision("shop", 3).status
            return status.instances.running == 0 and status.instances.wanted == 0

        until(at_zero, 30, "status to show zero instances")
        assert client.get_revision("shop", 3).status.ready  # scaled to zero is still Ready
        woken = get("cold-shop.localhost")
        assert woken.status_code == 200 and woken.headers["sos-revision"] == "shop-00003"

        # a killed instance is replaced
        (victim,) = instances_of("shop-00001", data)
        os.killpg(victim, signal.SIGKILL)
        until(
            lambda: (
                len(instances_of("shop-00001", data)) == 1
                and victim not in instances_of("shop-00001", data)
            ),
            30,
            "a replacement",
        )
        until(lambda: get("localhost", "/r/shop-00001/").status_code == 200, 30, "replacement")

        # sos logs, as a user runs it
        logs = subprocess.run(
            [str(Path(sys.executable).parent / "sos"), "logs", "shop", "-r", "1", "--tail", "200"],
            env={**os.environ, "SOS_URL": server.url, "SOS_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert logs.returncode == 0, logs.stderr
        assert "hello shop-00001 starting" in logs.stdout
        assert f"(pid {victim}) exited with code -9" in logs.stdout

    # restart the server: running instances are re-adopted, none duplicated (the woken
    # serverless revision first goes back to zero, so that what runs is known)
    until(lambda: not instances_of("shop-00003", data), 60, "scale to zero again")
    before = {rev: instances_of(rev, data) for rev in ("shop-00001", "shop-00002")}
    server.stop()
    assert all(len(pids) == 1 for pids in before.values())
    assert {rev: instances_of(rev, data) for rev in before} == before  # still running
    again = ServerProcess(data, server.router_port)
    servers.append(again)
    with Client(again.url, TOKEN) as client:
        client.wait_ready("shop", 1, timeout=60)
        assert get("localhost", "/r/shop-00002/").headers["sos-revision"] == "shop-00002"
        time.sleep(1.5)  # a few supervisor rounds: nothing new may start
        assert {rev: instances_of(rev, data) for rev in before} == before
        state = json.loads((data / "runtime" / "instances.json").read_text())
        assert sorted(r["pid"] for r in state["instances"]) == sorted(
            p for pids in before.values() for p in pids
        )

    # a server that crashes leaves its instances running too: the next one re-adopts them
    again.process.kill()
    again.process.wait()
    third = ServerProcess(data, server.router_port)
    servers.append(third)
    with Client(third.url, TOKEN) as client:
        client.wait_ready("shop", 1, timeout=60)
        assert get("shop.localhost").status_code == 200
        assert {rev: instances_of(rev, data) for rev in before} == before
    third.stop()  # by default, Ctrl-C takes the instances down too
    until(
        lambda: not instances_of("shop-00001", data) and not instances_of("shop-00002", data),
        30,
        "stop",
    )
