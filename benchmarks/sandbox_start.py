"""What the local runtime's sandbox costs an instance's start, in one run.

Builds the Flask fixture (``tests/sos/build/projects/flask-hello``) with ``sos build``,
prepares it once per isolation exactly as the local runtime does (unpack, then compile, in
the service's sandbox), then starts it ``--starts`` times per isolation, alternating, and
times each start from the process start to its first HTTP 200:

- ``none``: the baseline, the artifact run directly on the same clean interpreter (what a
  careful operator runs without a sandbox: ``python3 ARTIFACT.pyz``, packages unpacked);
- ``bubblewrap, host network``: the same command in the instance's sandbox
  (``sos.runtime.local.sandbox``: bwrap, setpriv to the service's uid, prlimit, read-only
  system, private /tmp and home), on the host's network (``sandbox_network=host``);
- ``bubblewrap, own network``: the same, with the network of its own the local runtime
  gives it by default (``sos.runtime.local.network``: a namespace, pasta forwarding the port).

    .venv/bin/python benchmarks/sandbox_start.py [--starts 5]

Needs root and bubblewrap (``scripts/setup``). Figures are wall-clock times on whatever
else the machine is doing: compare the medians measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from sos.build.api import read_metadata
from sos.launch import launch_command
from sos.models import ArtifactMetadata
from sos.runtime.local.network import APP_PORT, Network, network_problem
from sos.runtime.local.prepare import PREPARE_ENV, unpack_dir
from sos.runtime.local.sandbox import Sandbox, sandbox_problem
from sos.runtime.local.supervisor import inherited_env

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "sos" / "build" / "projects" / "flask-hello"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build(out: Path) -> tuple[Path, ArtifactMetadata]:
    sos = Path(sys.executable).parent / "sos"
    done = subprocess.run(
        [str(sos), "build", str(PROJECT), "--json", "--out", str(out)],
        env={**os.environ, "SOS_HOME": str(out / "home")},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    path = Path(json.loads(done.stdout)["path"])
    path.chmod(0o444)
    return path, read_metadata(path)


def prepare(sandbox: Sandbox, service: str, path: Path, meta: ArtifactMetadata) -> None:
    unpacked = unpack_dir(path, sandbox.shiv_root(service))
    assert unpacked is not None, "not a SOS-built artifact"
    python = sandbox.python_executable()
    site = sandbox.unpacked_path(service, unpacked) / "site-packages"
    inside = sandbox.artifact_path(path)
    env = {**inherited_env(os.environ), **PREPARE_ENV}
    for argv in (
        launch_command(meta, inside, python=python),
        [python, "-m", "compileall", "-q", "-j", "0", str(site)],
    ):
        placed = sandbox.wrap(service, argv, env, path, language="python", preparing=True)
        subprocess.run(placed.argv, env=placed.env, check=True, timeout=600, capture_output=True)


def start_once(
    sandbox: Sandbox, service: str, path: Path, meta: ArtifactMetadata, network: Network | None
) -> float:
    """Process start -> first 200, as the supervisor starts an instance (with its own
    network: bwrap reports its namespace, pasta forwards the port, then the app runs)."""
    port = free_port()
    inside = APP_PORT if network is not None else port
    argv = launch_command(meta, sandbox.artifact_path(path), python=sandbox.python_executable())
    env = {**inherited_env(os.environ), "PORT": str(inside), "HOST": "127.0.0.1"}
    info, release = os.pipe(), os.pipe()
    handed = (info[1], release[0]) if network is not None else None
    placed = sandbox.wrap(service, argv, env, path, language="python", network=handed)
    started = time.perf_counter()
    process = subprocess.Popen(
        placed.argv,
        env=placed.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        pass_fds=handed or (),
    )
    for fd in (*info, *release) if network is None else handed or ():
        os.close(fd)
    attached = None
    if network is not None:
        try:
            attached = network.attach(f"bench-{port}", info[0], release[1], port, inside)
        finally:
            os.close(info[0])
            os.close(release[1])
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the instance exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
            if time.perf_counter() - started > 60:
                raise RuntimeError("no answer in 60 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if network is not None and attached is not None:
            network.detach(attached)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    problem = sandbox_problem()
    if problem is not None:
        print(f"cannot measure the sandbox here: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sos-bench-sandbox-") as tmp:
        work = Path(tmp)
        path, meta = build(work / "dist")
        print(f"artifact: {path.name} ({meta.size / 2**20:.1f} MiB), {args.starts} starts each")
        sandboxes = {kind: Sandbox(work / kind, kind) for kind in ("none", "bubblewrap")}
        for sandbox in sandboxes.values():
            sandbox.start()
            prepare(sandbox, "bench", path, meta)
        network = None if network_problem() else Network(work / "bubblewrap", "private")
        kinds: dict[str, tuple[Sandbox, Network | None]] = {
            "none": (sandboxes["none"], None),
            "bubblewrap, host network": (sandboxes["bubblewrap"], None),
        }
        if network is not None:
            network.start()
            kinds["bubblewrap, own network"] = (sandboxes["bubblewrap"], network)
        else:
            print(f"own network: not measured ({network_problem()})")
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.starts):
            for kind, (sandbox, net) in kinds.items():
                times[kind].append(start_once(sandbox, "bench", path, meta, net))
        base = statistics.median(times["none"])
        for kind, seconds in times.items():
            median = statistics.median(seconds)
            print(
                f"{kind:>24}: median {median * 1000:7.1f} ms to the first 200 "
                f"(min {min(seconds) * 1000:.1f}, max {max(seconds) * 1000:.1f}); "
                f"{median / base:.2f}x the baseline, +{(median - base) * 1000:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
