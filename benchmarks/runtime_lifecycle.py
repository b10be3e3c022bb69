"""The local runtime as users meet it, through a real `sos server` process and the client:

- deploy: ``create_revision`` -> Ready for Python artifacts (goal <= 2 s): the first
  revision of a new artifact (which includes preparing it: shiv unpacks it once) and later
  revisions of it, next to the artifact's own exec-to-first-200 when started by hand with
  an empty and with a filled ``SHIV_ROOT`` (the floors), measured in this run;
- cold start: first answer from a revision scaled to zero, through the activator, minus a
  warm answer right after (goal <= 1 s added);
- deploy -> Failed: a revision of the same artifact with a memory limit (8Mi) it cannot
  import its packages under, so it crashes at every start, until ``wait_ready`` raises
  ``RevisionFailedError`` (what ``sos deploy`` waits before exiting 1);
- a slow start: a revision whose app listens only after ``--slow-start`` seconds (20), its
  deploy -> Ready and its cold start from zero through the activator;
- zero downtime: 10 traffic shifts and 2 rollbacks while ``hey`` sends a steady load of
  several hundred requests/s (goal: 0 failed requests).

    .venv/bin/python benchmarks/runtime_lifecycle.py [--rounds 3] [--load-seconds 25]
        [--only flask|movielens] [--router haproxy|python] [--slow-start 20]

Two Python artifacts, built with ``sos build``: the flask-hello fixture project (a small
Flask app, ~1 MB) and the MovieLens example (``examples/movielens``: Flight, pandas and
numpy, ~45 MB; it needs the data in ``MOVIELENS_DIR``, else it is skipped and the output
says so). When the flask-hello build cannot run here, the stdlib test app (a plain zipapp)
is used instead. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the tests' helpers

from sos_harness import (  # noqa: E402
    TOKEN,
    ServerProcess,
    instances_of,
    kill_instances,
    publish,
    until,
)

from sos.client import Client  # noqa: E402
from sos.errors import RevisionFailedError  # noqa: E402
from sos.models import RevisionSpec, ServiceSpec, TrafficRoute  # noqa: E402
from sos.runtime.local.supervisor import inherited_env  # noqa: E402

SOS = Path(sys.executable).parent / "sos"
MOVIELENS_DATA = Path(
    os.environ.get("MOVIELENS_DIR") or ROOT.parent / "shared" / "data" / "movielens-small"
)


@dataclass
class Subject:
    """One artifact to deploy: what it is, its file, and its revision's extra spec."""

    name: str
    what: str
    path: Path
    spec: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def sos_build(project: Path, work: Path) -> tuple[Path | None, str]:
    """`sos build` with a catalog of its own (the build cache is shared, so it is quick
    after the first time); (artifact path or None, the error's last line)."""
    result = subprocess.run(
        [str(SOS), "build", str(project), "--json", "--out", str(work / "built")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOS_HOME": str(work / "sos-home")},
    )
    if result.returncode == 0:
        return Path(json.loads(result.stdout)["path"]), ""
    return None, (result.stderr.strip().splitlines() or ["?"])[-1]


def subjects(work: Path, only: str | None) -> list[Subject]:
    found = []
    if only in (None, "flask"):
        project = work / "flask-hello"
        shutil.copytree(ROOT / "tests" / "sos" / "build" / "projects" / "flask-hello", project)
        path, why = sos_build(project, work)
        if path is not None:
            found.append(Subject("flask", "flask-hello (sos build: shiv + gunicorn, Flask)", path))
        else:
            fallback = work / "hello.pyz"
            zipapp.create_archive(ROOT / "tests" / "sos" / "runtime" / "apps" / "hello", fallback)
            found.append(Subject("flask", f"stdlib test app (sos build failed: {why})", fallback))
    if only in (None, "movielens"):
        if not (MOVIELENS_DATA / "ratings.csv").exists():
            print(f"movielens: skipped (no data in {MOVIELENS_DATA}; set MOVIELENS_DIR)")
            return found
        subprocess.run(  # pipeline v3's model, which the build packs (as the main job does)
            [
                sys.executable,
                str(ROOT / "examples" / "movielens" / "movielens_model.py"),
                "--if-missing",
            ],
            env={**os.environ, "MOVIELENS_DIR": str(MOVIELENS_DATA)},
            check=True,
            capture_output=True,
        )
        path, why = sos_build(ROOT / "examples" / "movielens", work)
        if path is None:
            print(f"movielens: skipped (sos build failed: {why})")
            return found
        size = path.stat().st_size / 2**20
        # by hand the artifact may read the data where it lies; a deployed revision reads the
        # copy packed into the artifact (an instance's sandbox sees no path of the machine)
        env = {"MOVIELENS_DIR": str(MOVIELENS_DATA)}
        spec = {"health_check": {"readiness_probe": "/readyz", "liveness_probe": "/healthz"}}
        what = f"MovieLens example (sos build: Flight + pandas, {size:.0f} MiB)"
        found.append(Subject("movielens", what, path, spec, env))
    return found


def first_200_by_hand(artifact: Path, shiv_root: Path, env: dict[str, str]) -> float:
    """Seconds from exec to the first HTTP answer when the artifact is started by hand."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **inherited_env(os.environ),  # what an instance gets of the server's environment
        **env,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SHIV_ROOT": str(shiv_root),
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
                if process.poll() is not None:
                    why = f"{artifact.name} exited with {process.returncode}"
                    raise RuntimeError(why) from None
                time.sleep(0.005)
    finally:
        os.killpg(process.pid, 15)
        process.wait()


def hey(router_port: int, service: str, seconds: float, out: list[str]) -> None:
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
            f"{service}.localhost",
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
    parser.add_argument("--only", choices=["flask", "movielens"])
    parser.add_argument(
        "--slow-start", type=float, default=20, help="an app that starts in this many s (0: skip)"
    )
    parser.add_argument(
        "--router", choices=["haproxy", "python"], help="the data path (default: sos server's)"
    )
    args = parser.parse_args()
    print("local runtime lifecycle (shared 2-core machine: figures are noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        found = subjects(work, args.only)
        data = work / "data"
        server = ServerProcess(data, 0, **({"SOS_ROUTER": args.router} if args.router else {}))
        print(f"router data path: {args.router or 'the default'}")
        with running(server), Client(server.url, TOKEN) as client:
            for subject in found:
                lifecycle(server, client, subject, work, args.rounds)
            if args.slow_start:
                slow_start(server, client, work, args.slow_start)
            if found and found[0].name == "flask":
                zero_downtime(server, client, f"svc-{found[0].name}", args.load_seconds)


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """``server`` for the block; then stopped, with what it started (its last output on
    stderr when the block failed)."""
    try:
        yield server
    except BaseException:
        print("".join(server.output[-60:]), file=sys.stderr)
        raise
    finally:
        server.stop()
        kill_instances(server.data_dir)


def lifecycle(
    server: ServerProcess, client: Client, subject: Subject, work: Path, rounds: int
) -> None:
    print(f"\n== {subject.what}")
    router = f"http://127.0.0.1:{server.router_port}"
    service = f"svc-{subject.name}"
    publish(client, subject.path, subject.name, "python")
    client.apply(ServiceSpec(name=service, team="bench"))
    spec = {
        "artifact": {"name": subject.name, "version": "v1"},
        "autoscaling": {"min_scale": 1},
        **subject.spec,
    }

    # ---- by hand: the floors (an empty SHIV_ROOT unpacks first; a filled one does not)
    unpacking = [
        first_200_by_hand(subject.path, work / f"shiv-{subject.name}-{i}", subject.env)
        for i in range(rounds)
    ]
    warm_root = work / f"shiv-{subject.name}-0"
    by_hand = [first_200_by_hand(subject.path, warm_root, subject.env) for _ in range(rounds)]

    # ---- deploy: the first revision prepares the artifact, later ones find it prepared
    def deploy() -> float:
        started = time.perf_counter()
        revision = client.create_revision(service, RevisionSpec.model_validate(spec))
        client.wait_ready(service, revision.id or "", timeout=120, interval=0.01)
        return time.perf_counter() - started

    first = deploy()
    later = [deploy() for _ in range(rounds)]
    unpack_s, hand_s, later_s = (statistics.median(x) for x in (unpacking, by_hand, later))
    print("deploy: create_revision -> Ready")
    print(f"  by hand, exec -> first answer, empty SHIV_ROOT (unpacks): {unpack_s:.3f}s")
    print(f"  by hand, exec -> first answer, unpacked before:          {hand_s:.3f}s")
    print(f"  sos, first revision of the artifact (prepare included):  {first:.3f}s")
    print(
        f"  sos, later revisions (prepared):                        {later_s:.3f}s "
        f"(median of {rounds}; {later_s / hand_s:.1f}x by hand; goal <= 2 s)"
    )

    # ---- cold start through the activator
    cold_spec = {
        **spec,
        # zero after 6 s without requests: a stable window (6 s) with no traffic, then
        # the 1 s grace; defaults are 60 s and 30 s, like Knative's
        "autoscaling": {
            "min_scale": 0,
            "stable_window_seconds": 6,
            "scale_to_zero_grace_seconds": 1,
        },
    }
    cold = client.create_revision(service, RevisionSpec.model_validate(cold_spec))
    assert cold.id is not None
    route = client.get_traffic(service).model_dump()
    route["routes"].append({"revision": cold.id, "percent": 0, "tag": "cold"})
    client.set_traffic(service, TrafficRoute.model_validate(route))
    colds, warms = [], []
    with httpx.Client(headers={"Host": f"cold-{service}.localhost"}, timeout=60) as http:
        for _ in range(rounds):
            until(lambda: not instances_of(cold.id or "", server.data_dir), 90, "zero")
            started = time.perf_counter()
            assert http.get(router + "/").status_code < 500
            colds.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert http.get(router + "/").status_code < 500
            warms.append(time.perf_counter() - started)
    cold_s, warm_s = statistics.median(colds), statistics.median(warms)
    print("cold start: first answer from zero instances (activator) vs a warm answer")
    print(
        f"  cold {cold_s:.3f}s, warm {warm_s * 1000:.1f} ms: {cold_s - warm_s:.3f}s added "
        f"(median of {rounds}; goal <= 1 s)"
    )

    # ---- deploy -> Failed: the same artifact with a memory limit it cannot even import its
    # packages under (a MemoryError at every start): how long `sos deploy` waits to say so
    broken = {**spec, "resources": {"memory": "8Mi"}}
    started = time.perf_counter()
    bad = client.create_revision(service, RevisionSpec.model_validate(broken))
    try:
        client.wait_ready(service, bad.id or "", timeout=300, interval=0.01)
        raise AssertionError("a revision whose server cannot start became Ready")
    except RevisionFailedError as exc:
        failed_s = time.perf_counter() - started
        reason = str(exc).splitlines()[0][:110]
    print("deploy -> Failed: memory 8Mi, a MemoryError at every start (a crash loop)")
    print(f"  create_revision -> RevisionFailedError: {failed_s:.3f}s ({reason})")


def slow_start(server: ServerProcess, client: Client, work: Path, delay: float) -> None:
    """A revision whose app takes ``delay`` seconds to listen (a model loading), scaled to
    zero: the first request waits for its start through the activator."""
    print(f"\n== cold start of a revision whose app starts in {delay:g}s (stdlib test app)")
    app = work / "slow.pyz"
    zipapp.create_archive(ROOT / "tests" / "sos" / "runtime" / "apps" / "hello", app)
    publish(client, app, "slow", "python")
    service = "svc-slow"
    client.apply(ServiceSpec(name=service, team="bench"))
    spec = {
        "artifact": {"name": "slow", "version": "v1"},
        "env_vars": [{"id": "HELLO_START_DELAY", "value": f"{delay:g}"}],
        "health_check": {"readiness_probe": "/ready", "startup_timeout_seconds": 3 * delay},
        "autoscaling": {
            "min_scale": 0,
            "stable_window_seconds": 6,
            "scale_to_zero_grace_seconds": 1,
        },
    }
    started = time.perf_counter()
    revision = client.create_revision(service, RevisionSpec.model_validate(spec))
    client.wait_ready(service, revision.id or "", timeout=6 * delay, interval=0.05)
    deploy_s = time.perf_counter() - started
    until(lambda: not instances_of(revision.id or "", server.data_dir), 90, "zero")
    router = f"http://127.0.0.1:{server.router_port}"
    with httpx.Client(headers={"Host": f"{service}.localhost"}, timeout=6 * delay) as http:
        started = time.perf_counter()
        answer = http.get(router + "/")
        cold_s = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    print(f"  deploy -> Ready: {deploy_s:.3f}s ({deploy_s - delay:.3f}s beyond the app's start)")
    print(
        f"  cold request from zero -> 200: {cold_s:.3f}s ({cold_s - delay:.3f}s beyond the "
        f"app's start; the budget, startup_timeout_seconds, is {3 * delay:g}s)"
    )


def zero_downtime(server: ServerProcess, client: Client, service: str, seconds: float) -> None:
    if not shutil.which("hey"):
        print("\nzero downtime: skipped (hey is not installed; scripts/setup installs it)")
        return
    first = client.list_revisions(service)[0].id
    second = client.list_revisions(service)[1].id
    output: list[str] = []
    load = threading.Thread(target=hey, args=(server.router_port, service, seconds, output))
    load.start()
    time.sleep(2)
    steps = []
    splits = [{first: 50, second: 50}, {second: 100}, {first: 100}, {first: 90, second: 10}]
    for i in range(10):
        split = splits[i % len(splits)]
        client.set_traffic(service, {k or "": v for k, v in split.items()})
        steps.append("shift")
        time.sleep(1.5)
        if i in (4, 8):
            client.rollback(service)
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
