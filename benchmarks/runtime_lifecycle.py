"""The local runtime as users meet it, through a real `sos server` process and the client:

- deploy: ``create_revision`` -> Ready for a Python artifact (goal <= 2 s), next to the
  artifact's own start-to-first-200 when run by hand (the floor), measured in this run;
- cold start: first answer from a revision scaled to zero, through the activator, minus a
  warm answer right after (goal <= 1 s added);
- zero downtime: 10 traffic shifts and 2 rollbacks while ``hey`` sends a steady load of
  several hundred requests/s (goal: 0 failed requests).

    .venv/bin/python benchmarks/runtime_lifecycle.py [--rounds 3] [--load-seconds 25]

The Python artifact is built with ``sos build`` from the flask-hello fixture project (a
shiv zipapp served by gunicorn); when that build cannot run here, the stdlib test app
(a plain zipapp) is used and the output says so. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipapp
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sos.runtime.harness import (  # noqa: E402
    TOKEN,
    ServerProcess,
    instances_of,
    kill_instances,
    publish,
    until,
)

from sos.client import Client  # noqa: E402
from sos.models import RevisionSpec, ServiceSpec, TrafficRoute  # noqa: E402

SOS = Path(sys.executable).parent / "sos"


def python_artifact(work: Path) -> tuple[Path, str]:
    """(artifact, what it is): a `sos build` of flask-hello, else the stdlib test app."""
    project = work / "flask-hello"
    shutil.copytree(ROOT / "tests" / "sos" / "build" / "projects" / "flask-hello", project)
    result = subprocess.run(
        [str(SOS), "build", str(project), "--json", "--out", str(work / "built")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return Path(json.loads(result.stdout)["path"]), "flask-hello (sos build: shiv + gunicorn)"
    fallback = work / "hello.pyz"
    zipapp.create_archive(ROOT / "tests" / "sos" / "runtime" / "apps" / "hello", fallback)
    why = (result.stderr.strip().splitlines() or ["?"])[-1]
    return fallback, f"stdlib test app (sos build failed here: {why})"


def first_200_by_hand(artifact: Path) -> float:
    """Seconds from exec to the first HTTP 200 when the artifact is started by hand."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SOS_WORKER_COUNT": "1",
        "SOS_THREAD_COUNT": "1",
        "SOS_WORKER_CLASS": "",
        "SOS_TIMEOUT_SECONDS": "30",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(artifact)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.005)
    finally:
        os.killpg(process.pid, 15)
        process.wait()


def hey(router_port: int, seconds: float, out: list[str]) -> None:
    result = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds:g}s",
            "-c",
            "16",
            "-q",
            "30",
            "-host",
            "shop.localhost",
            f"http://127.0.0.1:{router_port}/",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out.append(result.stdout + result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=25)
    args = parser.parse_args()
    print("local runtime lifecycle (shared 2-core machine: figures are noisy)\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        artifact, what = python_artifact(work)
        print(f"python artifact: {what}")
        data = work / "data"
        server = ServerProcess(data, 0)
        try:
            run(server, artifact, args)
        except BaseException:
            print("".join(server.output[-60:]), file=sys.stderr)
            raise
        finally:
            server.stop()
            kill_instances(data)


def run(server: ServerProcess, artifact: Path, args: argparse.Namespace) -> None:
    router = f"http://127.0.0.1:{server.router_port}"
    spec = {"artifact": {"name": "app", "version": "v1"}, "autoscaling": {"min_scale": 1}}
    with Client(server.url, TOKEN) as client:
        publish(client, artifact, "app", "python")
        client.apply(ServiceSpec(name="shop", team="bench"))

        # ---- deploy time
        first_200_by_hand(artifact)  # the first start unpacks the zipapp: not counted
        by_hand = [first_200_by_hand(artifact) for _ in range(args.rounds)]
        deploys = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            revision = client.create_revision("shop", RevisionSpec.model_validate(spec))
            client.wait_ready("shop", revision.id or "", timeout=60, interval=0.01)
            deploys.append(time.perf_counter() - started)
        hand, deploy = statistics.median(by_hand), statistics.median(deploys)
        print("\ndeploy: create_revision -> Ready")
        print(f"  artifact started by hand, exec -> first 200: {hand:.3f}s (median)")
        print(
            f"  sos create_revision -> Ready:                {deploy:.3f}s (median of "
            f"{args.rounds}; {deploy / hand:.1f}x by hand; goal <= 2 s)"
        )

        # ---- cold start through the activator
        cold_spec = {
            "artifact": {"name": "app", "version": "v1"},
            # zero after 6 s without requests: a stable window (6 s) with no traffic, then
            # the 1 s grace; defaults are 60 s and 30 s, like Knative's
            "autoscaling": {
                "min_scale": 0,
                "stable_window_seconds": 6,
                "scale_to_zero_grace_seconds": 1,
            },
        }
        cold = client.create_revision("shop", RevisionSpec.model_validate(cold_spec))
        assert cold.id is not None
        route = client.get_traffic("shop").model_dump()
        route["routes"].append({"revision": cold.id, "percent": 0, "tag": "cold"})
        client.set_traffic("shop", TrafficRoute.model_validate(route))
        colds, warms = [], []
        with httpx.Client(headers={"Host": "cold-shop.localhost"}, timeout=30) as http:
            for _ in range(args.rounds):
                until(lambda: not instances_of(cold.id or "", server.data_dir), 60, "zero")
                started = time.perf_counter()
                assert http.get(router + "/").status_code == 200
                colds.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert http.get(router + "/").status_code == 200
                warms.append(time.perf_counter() - started)
        cold_s, warm_s = statistics.median(colds), statistics.median(warms)
        print("\ncold start: first answer from zero instances (activator) vs a warm answer")
        print(
            f"  cold {cold_s:.3f}s, warm {warm_s * 1000:.1f} ms: {cold_s - warm_s:.3f}s added "
            f"(median of {args.rounds}; goal <= 1 s)"
        )

        # ---- zero downtime under load
        if not shutil.which("hey"):
            print("\nzero downtime: skipped (hey is not installed; scripts/setup installs it)")
            return
        first = client.list_revisions("shop")[0].id
        second = client.list_revisions("shop")[1].id
        output: list[str] = []
        load = threading.Thread(target=hey, args=(server.router_port, args.load_seconds, output))
        load.start()
        time.sleep(2)
        steps = []
        splits = [{first: 50, second: 50}, {second: 100}, {first: 100}, {first: 90, second: 10}]
        for i in range(10):
            split = splits[i % len(splits)]
            client.set_traffic("shop", {k or "": v for k, v in split.items()})
            steps.append("shift")
            time.sleep(1.5)
            if i in (4, 8):
                client.rollback("shop")
                steps.append("rollback")
                time.sleep(1.5)
        load.join()
        text = output[0]
        total = int(re.search(r"\[200\]\s+(\d+) responses", text).group(1))  # type: ignore[union-attr]
        others = re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)
        failed = sum(int(n) for code, n in others if code != "200")
        errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get", text))
        rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
        print(
            f"\nzero downtime: {steps.count('shift')} traffic shifts + "
            f"{steps.count('rollback')} rollbacks under load"
        )
        print(
            f"  {total} answered 200 at {float(rps.group(1)) if rps else 0:.0f} req/s; "
            f"non-200: {failed}; transport errors: {errors} (goal: 0 failed)"
        )


if __name__ == "__main__":
    main()
