"""Fault drills: `kill -9` of an instance under load, `kill -9` of `sos server` in the middle
of a deploy and of a traffic change, and a full or read-only data dir.

Held: requests recover and the instance is replaced (the platform log says why); after a
server restart the state is whole (every write landed or none did), running instances are
re-adopted (the same processes) and none is started twice; a full disk and a read-only data
dir are clear errors that change nothing, and everything works again once space is back."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from drills_harness import (
    SOS,
    TOKEN,
    Load,
    SosServer,
    instances,
    instances_of,
    kill_runtime,
    report,
    served_split,
    until,
)
from drills_platform import SERVICE, SFIX, Built, Platform, cli

from sos import Client, ServerUnavailableError, ServiceSpec, SOSError, TrafficRoute

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEPLOY = SFIX.parent / "sfix-service.py"  # revision 1, all traffic
CANARY = SFIX.parent / "sfix-service-canary.yaml"  # revision 2: 10% @canary, 1: 90%
SFIX_HOST = "sfix-service.localhost"
#: the servers here use the default data path: HAProxy when installed (it outlives a killed
#: server), else the Python router (which lives in the server process)
HAPROXY = shutil.which("haproxy") is not None and os.environ.get("SOS_ROUTER") != "python"
DATA_PATH = "HAProxy" if HAPROXY else "Python router"


def _routes(route: TrafficRoute | None) -> set[tuple[str, int, str | None]]:
    return {(r.revision, r.percent, r.tag) for r in route.routes} if route else set()


def _leader(pids: set[int]) -> int:
    """The instance's own process (the app, not its sandbox), as `ps` shows it."""
    return min(pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().strip() != "bwrap")


# --------------------------------------------------------------------------- instance


def _replacement_ready(platform: Platform, rev: str, victim: str) -> str | None:
    """The id of an instance started after ``victim`` that became ready (its platform log)."""
    folder = platform.server.data_dir / "runtime" / "logs" / SERVICE / rev
    for events in folder.glob(f"{rev}-*.sos.log"):
        instance = events.name.removesuffix(".sos.log")
        if instance not in (victim, f"{rev}-prepare") and " ready after " in events.read_text():
            return instance
    return None


def test_killed_instance_is_replaced_and_requests_recover(platform: Platform) -> None:
    server, rev = platform.server, platform.v1
    with server.client() as client:
        client.set_traffic(SERVICE, {rev: 100})
    until(lambda: len(instances_of(server.data_dir, rev)) == 1, 60, f"one instance of {rev}")
    (victim, pids), *_ = instances_of(server.data_dir, rev).items()
    statuses: list[str] = []
    users = lambda i: f"/recs/for_user?user_id={1 + i % 610}"  # noqa: E731
    with Load(server.router, platform.host, users, workers=4) as load:
        until(lambda: load.count_since(0) >= 100, 60, "100 requests before the kill")
        killed = time.monotonic()
        os.kill(_leader(pids), signal.SIGKILL)  # kill -9 PID
        with server.client() as client:
            while (new := _replacement_ready(platform, rev, victim)) is None:
                status = client.get_revision(SERVICE, rev).status
                statuses.append(f"{status.reason}: {status.message or ''}")
                assert time.monotonic() - killed < 120, statuses[-3:]
                time.sleep(0.05)
        replaced = time.monotonic()
        until(lambda: load.count_since(replaced) >= 100, 60, "100 requests after the kill")
    failed = [r for r in load.results if r.status != 200]
    until(lambda: victim not in instances_of(server.data_dir, rev), 30, "the old one to be gone")
    with server.client() as client:
        platform_log = [
            r.text for r in client.logs(SERVICE, rev, tail=5000) if r.stream == "platform"
        ]
    said = [line for line in platform_log if victim in line and "killed by SIGKILL" in line]
    during = sorted({s for s in statuses if not s.startswith("Ready")})
    report(
        "faults: kill -9 of an instance under load (4 clients)",
        f"{len(load.results)} requests, {len(failed)} failed"
        + (f" ({', '.join(sorted({r.error[:80] for r in failed}))})" if failed else ""),
        f"replacement {new} ready {replaced - killed:.2f}s after the kill (requests meanwhile "
        "were held by the activator or finished by the old instance's worker)",
        f"status while it was replaced: {'; '.join(during) or 'Ready (not refreshed yet)'}",
        f"sos logs: {said[0] if said else 'NOTHING'}",
        "the killed instance's processes (gunicorn master and worker) are all gone",
    )
    assert said, platform_log[-10:]
    # at most the requests in flight on it may fail (a Go binary has no worker to finish
    # them); none since the replacement is ready
    assert len(failed) <= 4, [f"{r.status} {r.error}" for r in failed]
    assert all(r.status == 200 for r in load.results if r.started >= replaced)


# --------------------------------------------------------------------------- server


class Running:
    """The server a drill runs now (a drill that restarts it puts the new one here)."""

    def __init__(self, server: SosServer) -> None:
        self.server = server


@pytest.fixture
def sfix_server(tmp_path: Path, sfix: Built, sos_home: Path) -> Iterator[Running]:
    """A server of its own with the Flask example as revision 1 (all traffic)."""
    running = Running(SosServer(tmp_path / "data"))
    try:
        with running.server.client() as client:
            client.push_artifact(sfix[0], metadata=sfix[1])
        done = cli(running.server, sos_home, "deploy", str(DEPLOY))
        assert done.returncode == 0, done.stdout + done.stderr
        yield running
    finally:
        running.server.stop()
        kill_runtime(running.server.data_dir)


def _restart(server: SosServer) -> tuple[SosServer, float]:
    """Start a new server on the same data dir and router port; seconds until it routes."""
    started = time.monotonic()
    again = SosServer(server.data_dir, router_port=server.router_port)
    with again.client() as client:
        until(lambda: client.get_service("sfix-service").status.ready, 60, "ready after restart")
    if "adopting HAProxy" in again.output:
        # the adopted HAProxy serves until the new one takes over: a split counted across
        # the handover would count two round-robin cycles, one of them cut short
        again.wait_for(r"HAProxy \(pid (\d+)\) took over from pid", 60)
    return again, time.monotonic() - started


def test_server_killed_in_the_middle_of_a_deploy(sfix_server: Running, sos_home: Path) -> None:
    server = sfix_server.server
    data = server.data_dir
    rev1 = "sfix-service-00001"
    before = {i: set(p) for i, p in instances_of(data, rev1).items()}
    deploy = subprocess.Popen(
        [SOS, "deploy", str(CANARY)],
        env={**os.environ, "SOS_URL": server.url, "SOS_TOKEN": TOKEN, "SOS_HOME": str(sos_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with server.client() as client:
        until(lambda: len(client.list_revisions("sfix-service")) == 2, 60, "revision 2")
    server.kill9()  # revision 2 exists; its instance is starting; traffic may not be set
    down = time.monotonic()
    # the data path (HAProxy) outlives the server: revision 1 keeps answering meanwhile
    codes: Counter[int | str] = Counter()
    with httpx.Client(timeout=5, headers={"Host": SFIX_HOST}) as http:
        for _ in range(50):
            try:
                codes[http.get(f"{server.router}/similar/1").status_code] += 1
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1
    if HAPROXY:
        assert codes == {200: 50}, codes
    while_down = ", ".join(f"{n}x {code}" for code, n in codes.most_common())
    out, _ = deploy.communicate(timeout=120)
    assert deploy.returncode == 1 and "cannot reach the SOS server" in out, out
    server, took = _restart(server)
    lost = time.monotonic() - down
    sfix_server.server = server
    with server.client() as client:
        revisions = [r.number for r in client.list_revisions("sfix-service")]
        traffic = _routes(client.get_traffic("sfix-service"))
    assert revisions == [1, 2]
    assert traffic in (
        {("sfix-service-00001", 100, None)},
        {("sfix-service-00002", 10, "canary"), ("sfix-service-00001", 90, None)},
    ), traffic
    adopted = instances_of(data, rev1)
    assert adopted == before, "revision 1 must be re-adopted, not started again"
    # the deploy again finishes what was cut short, and makes nothing twice
    again = cli(server, sos_home, "deploy", str(CANARY))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already has this spec: no new revision" in again.stdout
    with server.client() as client:
        assert [r.number for r in client.list_revisions("sfix-service")] == [1, 2]
        assert _routes(client.get_traffic("sfix-service")) == {
            ("sfix-service-00002", 10, "canary"),
            ("sfix-service-00001", 90, None),
        }
        client.wait_ready("sfix-service", 2, timeout=60)
    for rev in (rev1, "sfix-service-00002"):
        running = instances_of(data, rev)
        assert len(running) == 1, f"{rev}: {running}"
    split = served_split(server.router, SFIX_HOST, 100)
    assert split == {"sfix-service-00001": 90, "sfix-service-00002": 10}, split
    report(
        "faults: kill -9 of sos server in the middle of a deploy",
        f"killed once revision 2 existed; `sos deploy` said: {out.strip().splitlines()[-1]}",
        f"50 requests while the server was down ({DATA_PATH}): {while_down}",
        f"restarted and ready in {took:.1f}s ({lost:.1f}s after the kill); revisions "
        f"{revisions}, traffic then {sorted(traffic)}",
        f"revision 1 re-adopted (pids {sorted(p for ps in adopted.values() for p in ps)} "
        "unchanged); one instance per revision",
        "the deploy run again made no revision, set the split; 100 requests: 90/10 exactly",
    )


def _change(url: str, target: dict[int, int], errors: list[str]) -> None:
    try:
        with Client(url, TOKEN) as client:
            client.set_traffic("sfix-service", target)  # type: ignore[arg-type]
    except SOSError as exc:
        errors.append(type(exc).__name__)


def test_server_killed_in_the_middle_of_traffic_changes(sfix_server: Running) -> None:
    server = sfix_server.server
    data = server.data_dir
    with server.client() as client:
        client.create_revision("sfix-service", client.get_revision("sfix-service", 1))
        client.wait_ready("sfix-service", 2, timeout=60)
    started = time.monotonic()
    _change(server.url, {1: 50, 2: 50}, [])
    took = time.monotonic() - started  # how long a change takes, as sent below: kill during one
    rows: list[str] = []
    targets = ({1: 90, 2: 10}, {1: 10, 2: 90}, {1: 30, 2: 70}, {1: 60, 2: 40})
    delays = (0.5 * took, 0.75 * took, 1.0 * took, 1.25 * took)
    for target, delay in zip(targets, delays, strict=True):
        pids = {
            rev: instances_of(data, rev) for rev in ("sfix-service-00001", "sfix-service-00002")
        }
        with server.client() as client:
            before = _routes(client.get_traffic("sfix-service"))
            changes = len(client.history("sfix-service", limit=100))
        errors: list[str] = []
        sender = threading.Thread(target=_change, args=(server.url, target, errors))
        sender.start()
        time.sleep(delay)
        server.kill9()
        sender.join(30)
        server, took = _restart(server)
        sfix_server.server = server
        with server.client() as client:
            after = _routes(client.get_traffic("sfix-service"))
            history = client.history("sfix-service", limit=100)
        wanted = {(f"sfix-service-{r:05d}", p, None) for r, p in target.items()}
        assert after in (before, wanted), f"half-applied: {after}"
        assert len(history) - changes == (1 if after == wanted else 0)
        served = served_split(server.router, SFIX_HOST, 100)
        assert served == {rev: pct for rev, pct, _ in after}, served
        for rev, owned in pids.items():
            assert instances_of(data, rev) == owned, f"{rev} must be re-adopted as it was"
        rows.append(
            f"kill {delay * 1000:.1f}ms after sending {target}: "
            f"{'the change landed' if after == wanted else 'the change did not land'} "
            f"(client: {errors[0] if errors else 'answered'}); restarted in {took:.1f}s; "
            f"100 requests split {'/'.join(str(served[k]) for k in sorted(served))} as stored"
        )
    report(
        "faults: kill -9 of sos server in the middle of traffic changes (4 times)",
        *rows,
        "each time: the route is the old one or the new one, whole; one history entry per "
        "landed change; instances re-adopted (same pids), none started twice",
    )


# --------------------------------------------------------------------------- disk


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("the full-disk drill mounts a small tmpfs: run as root (CI does)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; how many bytes fit."""
    written = 0
    with path.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        chunk = b"\0" * (1 << 20)
        while True:
            written += handle.write(chunk)
    with path.open("ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            written += handle.write(b"\0" * 4096)
    return written


def _snapshot(client: Client) -> dict[str, object]:
    return {
        "services": [(s.name, s.team, s.resource_version) for s in client.list_services()],
        "revisions": [(r.id, r.artifact.digest) for r in client.list_revisions("sfix-service")],
        "traffic": _routes(client.get_traffic("sfix-service")),
        "artifacts": [(a.name, a.version, a.digest) for a in client.list_artifacts()],
        "history": len(client.history("sfix-service")),
        "tokens": len(client.list_tokens()),
    }


def test_full_then_read_only_data_dir_are_clear_errors_that_change_nothing(
    tmp_path: Path, sfix: Built, sos_home: Path
) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "48m")
    server: SosServer | None = None
    try:
        server = SosServer(disk / "data")
        with server.client() as client:
            client.push_artifact(sfix[0], metadata=sfix[1])
        deployed = cli(server, sos_home, "deploy", str(DEPLOY))
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with server.client() as client:
            before = _snapshot(client)
        filled = _fill(disk / "filler")
        tried: list[str] = []
        canary = cli(server, sos_home, "deploy", str(CANARY))
        assert canary.returncode == 1, canary.stdout + canary.stderr
        assert "cannot store anything right now" in canary.stderr, canary.stderr
        assert "nothing was changed" in canary.stderr
        tried.append(f"sos deploy (new revision): {canary.stderr.strip()}")
        with server.client() as client:
            attempts = {
                "traffic change": lambda: client.set_traffic("sfix-service", {1: 100}),
                "artifact upload": lambda: client.push_artifact(
                    sfix[0], metadata=sfix[1].model_copy(update={"version": "9.9.9"})
                ),
                "token creation": lambda: client.create_token("ci", team="recs"),
                "service update": lambda: client.apply(
                    ServiceSpec(name="sfix-service", team="recs", description="changed")
                ),
            }
            for what, attempt in attempts.items():
                with pytest.raises(ServerUnavailableError, match="cannot store anything"):
                    attempt()
                tried.append(f"{what}: 503")
            assert _snapshot(client) == before  # reads work; nothing changed
        assert served_split(server.router, SFIX_HOST, 20) == {"sfix-service-00001": 20}
        assert not list((disk / "data" / "artifacts" / "tmp").iterdir()), "no partial upload"
        (disk / "filler").unlink()
        again = cli(server, sos_home, "deploy", str(CANARY))
        assert again.returncode == 0, again.stdout + again.stderr
        db = sqlite3.connect(f"file:{disk / 'data' / 'sos.db'}?mode=ro", uri=True)
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
        assert integrity == "ok"
        server.stop()
        until(lambda: not instances(disk / "data"), 30, "the instances to stop")
        # a read-only data dir: the server says so at start-up instead of half starting
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        refused = subprocess.run(
            [SOS, "server", "--port", "0", "--router-port", "0", "--data-dir", str(disk / "data")],
            env={**os.environ, "SOS_ADMIN_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode != 0
        assert "cannot write to the data dir" in refused.stderr, refused.stderr
        assert "Read-only file system" in refused.stderr
        assert "Traceback" not in refused.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        server = SosServer(disk / "data")
        with server.client() as client:
            revisions = [r.number for r in client.list_revisions("sfix-service")]
            client.wait_ready("sfix-service", 2, timeout=60)
        assert revisions == [1, 2]
        report(
            "faults: a full data dir (48 MiB tmpfs), then a read-only one",
            f"filled the last {filled / 2**20:.1f} MiB; each write was a clear 503, reads and "
            "routing went on, state unchanged, no partial upload left:",
            *(f"  {line}" for line in tried),
            "space freed: the same deploy worked; PRAGMA integrity_check: ok",
            f"read-only at start-up: {refused.stderr.strip().splitlines()[-1]}",
            "writable again: the server started with revisions 1 and 2 intact",
        )
    finally:
        if server is not None:
            server.stop()
            kill_runtime(server.data_dir)
        subprocess.run(["umount", "-l", str(disk)], check=False)
        shutil.rmtree(disk, ignore_errors=True)
