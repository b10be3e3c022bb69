"""What the repo's own apps need of memory, as instances of a real `sos server`: the figure
behind the local runtime's default memory limit (``default_memory``,
``docs/sos/local-runtime.md``, Limits).

Each app is deployed with no limit at all (``SOS_DEFAULT_MEMORY=none``) and served a load
for ``--seconds`` (8 clients; the MovieLens example gets users 1..610 through pipelines v1,
v2 and v3 and ``/recs/popular``); every 0.1 s the processes of its instance are read from
``/proc``. Reported, at their peak:

- the largest ``VmData`` of one process: what ``RLIMIT_DATA`` counts (the limit where
  cgroup v2 is not writable, as on this machine), per process;
- the instance's resident memory, summed over its processes (``VmRSS``): the bulk of what
  a cgroup's ``memory.max`` counts (it counts page cache and ``/tmp`` too);

then, with ``--check 1Gi`` (repeatable), the same deploy and load under that default, to
see each app serve it with every answer a 200.

    .venv/bin/python benchmarks/instance_memory.py [--only flask|movielens] [--seconds 20]
        [--check 1Gi --check 512Mi] [--workers 1]

The apps are runtime_lifecycle.py's: the flask-hello fixture and the MovieLens example,
built with ``sos build`` (MovieLens needs ``MOVIELENS_DIR``), plus the stdlib test app the
runtime tests deploy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
import zipapp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the tests' helpers

from sos_harness import TOKEN, ServerProcess, instances_of, publish  # noqa: E402

from runtime_lifecycle import Subject, running, subjects  # noqa: E402
from sos.client import Client  # noqa: E402
from sos.models import RevisionSpec, ServiceSpec  # noqa: E402

MiB = 2**20


def paths(subject: Subject) -> list[str]:
    """The requests of the load, in turn."""
    if subject.name == "movielens":
        users = [f"/recs/for_user?user_id={u}&version=v{v}" for u in range(1, 611) for v in "123"]
        return [*users, "/recs/popular"]
    return ["/"]


def status_of(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = (line.split(":", 1) for line in lines if line.startswith("Vm"))
    return {key: int(value.split()[0]) * 1024 for key, value in fields}


def group_pids(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == group:
                found.append(int(entry.name))
    return found


class Sampler:
    """The peaks of one revision's instances, sampled every 0.1 s in a thread."""

    def __init__(self, revision: str, data_dir: Path) -> None:
        self.revision, self.data_dir = revision, data_dir
        self.data = self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for group in instances_of(self.revision, self.data_dir):
                found = [status_of(pid) for pid in group_pids(group)]
                self.data = max([self.data, *(s.get("VmData", 0) for s in found)])
                self.rss = max(self.rss, sum(s.get("VmRSS", 0) for s in found))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def load(router: int, service: str, subject: Subject, seconds: float) -> tuple[int, int]:
    """(answers, of which not 200) of 8 clients for ``seconds``."""
    todo = itertools.cycle(paths(subject))
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counts = [0, 0]

    def client() -> None:
        with httpx.Client(headers={"Host": f"{service}.localhost"}, timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    path = next(todo)
                code = http.get(f"http://127.0.0.1:{router}{path}").status_code
                with lock:
                    counts[0] += 1
                    counts[1] += code != 200

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(client) for _ in range(8)]:
            future.result()
    return counts[0], counts[1]


def measure(work: Path, found: list[Subject], default: str, seconds: float, workers: int) -> None:
    server = ServerProcess(work / f"data-{default}", 0, SOS_DEFAULT_MEMORY=default)
    with running(server), Client(server.url, TOKEN, timeout=60) as client:
        for subject in found:
            publish(client, subject.path, subject.name, "python")
            service = f"svc-{subject.name}"
            client.apply(ServiceSpec(name=service, team="bench"))
            spec = {
                "artifact": {"name": subject.name, "version": "v1"},
                "autoscaling": {"min_scale": 1, "max_scale": 1},
                "gunicorn_config": {"worker_count": workers},
                **subject.spec,
            }
            revision = client.create_revision(service, RevisionSpec.model_validate(spec))
            assert revision.id is not None
            client.wait_ready(service, revision.id, timeout=180)
            sampler = Sampler(revision.id, server.data_dir)
            answers, bad = load(server.router_port, service, subject, seconds)
            sampler.stop()
            print(
                f"  {subject.name:10} default_memory={default}: {answers} answers, "
                f"{bad} not 200; peak VmData of one process {sampler.data / MiB:.0f} MiB, "
                f"peak resident (all its processes) {sampler.rss / MiB:.0f} MiB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["flask", "movielens"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--check", action="append", default=[], help="a default to try")
    parser.add_argument("--workers", type=int, default=1, help="Gunicorn workers per instance")
    args = parser.parse_args()
    print(f"memory of the repo's apps as instances, {args.workers} worker(s) (2 shared cores)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        found = subjects(work, args.only)
        hello = work / "hello.pyz"
        zipapp.create_archive(ROOT / "tests" / "sos" / "runtime" / "apps" / "hello", hello)
        found.append(Subject("hello", "stdlib test app", hello))
        for subject in found:
            print(f"- {subject.name}: {subject.what}")
        for default in ["none", *args.check]:
            measure(work, found, default, args.seconds, args.workers)


if __name__ == "__main__":
    main()
