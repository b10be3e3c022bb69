"""What the drills run: real `sos server` processes (local runtime) on 127.0.0.1, the
instances they start (found in /proc), a steady HTTP load through the router, and a report
of what each drill tried and what held (printed at the end of the test run)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from processes import interrupt

from sos import Client
from sos.runtime.local.ingress.haproxy.process import adoptable
from sos.runtime.local.network import Network

SOS = str(Path(sys.executable).parent / "sos")
TOKEN = "drill-admin-token-0123456789abcdef"
REPORT: list[tuple[str, list[str]]] = []


def report(drill: str, *lines: str) -> None:
    """Add what a drill tried and what held to the summary printed after the run."""
    REPORT.append((drill, list(lines)))
    print(f"\n[{drill}]", *lines, sep="\n  ")


def until(check: Callable[[], object], seconds: float, what: str) -> None:
    """Wait for ``check()`` to be true (polling); fail saying ``what`` did not happen."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.05)


class SosServer:
    """`sos server --backend local` in its own process group, admin token ``TOKEN``."""

    def __init__(self, data_dir: Path, *, router_port: int = 0, **env: str) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                SOS,
                "server",
                "--port",
                "0",
                "--router-port",
                str(router_port),
                "--data-dir",
                str(data_dir),
                "--backend",
                "local",
            ],
            env={**os.environ, "SOS_ADMIN_TOKEN": TOKEN, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self.wait_for(r"listening on (http://\S+)")
        self.router_port = int(self.wait_for(r"router listening on http://[\d.]+:(\d+)"))
        self.router = f"http://127.0.0.1:{self.router_port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                time.sleep(0.2)  # the rest of its output
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the output of sos server:\n{self.output}")

    def client(self, token: str = TOKEN) -> Client:
        return Client(self.url, token)

    def kill9(self) -> None:
        """`kill -9` of the server process alone (its instances live on, as in a crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """Ctrl-C: the server stops its instances too."""
        interrupt(self.process, 40)


def instances(data_dir: Path) -> dict[str, set[int]]:
    """Live instance ids of the runtime in ``data_dir`` -> their pids (an instance can be
    several processes: gunicorn's master and workers carry the same SOS_INSTANCE)."""
    marker = f"SOS_RUNTIME={(data_dir / 'runtime').resolve()}".encode()
    found: dict[str, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        if marker not in environ or stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X"):
            continue
        for item in environ:
            if item.startswith(b"SOS_INSTANCE="):
                found.setdefault(item.split(b"=", 1)[1].decode(), set()).add(int(entry))
    return found


def instances_of(data_dir: Path, revision: str) -> dict[str, set[int]]:
    return {i: pids for i, pids in instances(data_dir).items() if i.startswith(revision + "-")}


def kill_runtime(data_dir: Path) -> None:
    """Kill whatever a (killed) server of ``data_dir`` left running: its instances, and the
    HAProxy that went on serving them."""
    router = adoptable(data_dir / "runtime" / "router")
    if router is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(router[0], signal.SIGKILL)
    # the instances' own networks: their pastas, and the files their namespaces are bound to
    Network(data_dir / "runtime", "private").sweep(set())
    for pids in instances(data_dir).values():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def served_split(router: str, host: str, count: int, path: str = "/") -> dict[str, int]:
    """Send ``count`` requests one after another; how many each revision served."""
    served: dict[str, int] = {}
    with httpx.Client(base_url=router, timeout=30, headers={"Host": host}) as http:
        for _ in range(count):
            answer = http.get(path)
            assert answer.status_code == 200, answer.text
            rev = answer.headers["sos-revision"]
            served[rev] = served.get(rev, 0) + 1
    return served


# --------------------------------------------------------------------------- load


@dataclass
class Result:
    started: float
    ended: float
    status: int  # 0: no answer
    revision: str
    error: str = ""


@dataclass
class Load:
    """A steady load: ``workers`` clients each sending one request after another through
    the router (keep-alive), until stopped; every request's times, status and revision."""

    router: str
    host: str
    paths: Callable[[int], str]
    workers: int = 6
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        until(lambda: len(self.results) >= self.workers, 60, "the load to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.workers)
        async with httpx.AsyncClient(
            base_url=self.router, timeout=60, limits=limits, headers={"Host": self.host}
        ) as http:
            await asyncio.gather(*(self._worker(http, n) for n in range(self.workers)))

    async def _worker(self, http: httpx.AsyncClient, n: int) -> None:
        i = n
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = await http.get(self.paths(i))
                status, rev, error = answer.status_code, answer.headers.get("sos-revision", ""), ""
                if status != 200:
                    error = answer.text[:300]
            except httpx.HTTPError as exc:
                status, rev, error = 0, "", f"{type(exc).__name__}: {exc}"
            self.results.append(Result(started, time.monotonic(), status, rev, error))
            i += self.workers

    def count_since(self, since: float) -> int:
        return sum(1 for r in list(self.results) if r.started >= since)

    def failures(self) -> list[Result]:
        return [r for r in list(self.results) if r.status != 200]

    def between(self, start: float, end: float) -> list[Result]:
        return [r for r in list(self.results) if start <= r.started and r.started < end]


def split_of(results: list[Result]) -> dict[str, float]:
    """Percent of the answers each revision gave."""
    total = len(results)
    served: dict[str, int] = {}
    for r in results:
        served[r.revision] = served.get(r.revision, 0) + 1
    return {rev: 100 * k / total for rev, k in sorted(served.items())} if total else {}
