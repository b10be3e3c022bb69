"""Drill: a hostile tenant. Team A deploys an app that attacks the platform from inside its
instance; team B runs a victim with a database password in its environment. Every attack
must be refused, and the victim's password must appear in nothing team A can see."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from drills_harness import SosServer, kill_runtime, report
from drills_platform import REPO, Built

from sos import Artifact, Client, EnvVar, PermissionDeniedError, Revision, Service
from sos.models import ConfigFile
from sos.runtime.local.ingress.haproxy.process import adoptable

PROBE = REPO / "tests" / "drills" / "projects" / "probe"


def host_link_local() -> str:
    """The host's first IPv6 link-local address with its interface (``fe80::1%eth0``)."""
    listed = subprocess.run(["ip", "-json", "addr"], capture_output=True, text=True, check=True)
    for interface in json.loads(listed.stdout):
        for address in interface.get("addr_info", []):
            if interface["ifname"] != "lo" and str(address.get("local", "")).startswith("fe80"):
                return f"{address['local']}%{interface['ifname']}"
    pytest.skip("the host has no IPv6 link-local address to attack through")


def deploy(
    client: Client,
    name: str,
    team: str,
    built: Built,
    env: dict[str, str],
    secrets: dict[str, str] | None = None,
) -> None:
    _, meta = built
    if name not in [s.name for s in client.list_services()]:
        client.apply(Service(name=name, team=team))
    revision = client.create_revision(
        name,
        Revision(
            artifact=Artifact(name=meta.name, version=meta.version, digest=meta.digest),
            env_vars=[EnvVar(id=key, value=value) for key, value in env.items()]
            + [EnvVar(id=key, secret=secret) for key, secret in (secrets or {}).items()],
        ),
    )
    assert revision.number is not None
    client.set_traffic(name, {revision.number: 100})
    client.wait_ready(name, revision.number, timeout=120)


def test_a_tenant_cannot_reach_the_platform_or_another_tenant_from_its_instance(
    tmp_path: Path, build: Callable[[Path], Built]
) -> None:
    probe = build(PROBE)
    password = "pw-" + secrets.token_hex(12)
    server = SosServer(tmp_path / "data")
    try:
        with server.client() as admin:
            isolation = admin.server_info().isolation
            assert isolation.startswith("sandboxed by bubblewrap: a uid per service"), isolation
            assert "instances sandboxed by bubblewrap" in server.output  # said at start too
            team_a = admin.create_token("attacker", team="a").secret
            team_b = admin.create_token("victim", team="b").secret
            admin.push_artifact(probe[0], metadata=probe[1])  # the same app for both teams
        with server.client(team_b) as victim:
            victim.set_secret("db-password", password, team="b")
            # its settings file is set once on the service, merged into the revision
            victim.apply(
                Service(
                    name="victim",
                    team="b",
                    files=[ConfigFile(path="conf/app.yaml", content="pool: 4\n")],
                )
            )
            deploy(victim, "victim", "b", probe, {}, secrets={"DB_PASSWORD": "db-password"})
        data = str(server.data_dir.resolve())
        state = json.loads((server.data_dir / "runtime" / "instances.json").read_text())
        (victim_port,) = [i["port"] for i in state["instances"] if i["service"] == "victim"]
        # the host listens on all its addresses (as a dual-stack service or a statsd does)
        canary_tcp = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
        canary_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        canary_udp.bind(("0.0.0.0", canary_tcp.getsockname()[1]))
        canary_udp.setblocking(False)
        canary_port = canary_tcp.getsockname()[1]
        link_local = host_link_local()
        env = {
            "PROBE_HOST_LINK_LOCAL": f"{link_local}:{canary_port}",
            "PROBE_MULTICAST": f"224.0.0.1:{canary_port}",
            "PROBE_DATA_DIR": data,
            "PROBE_VICTIM": "victim",
            "PROBE_API": server.url.removeprefix("http://").rstrip("/"),
            "PROBE_VICTIM_INSTANCE": f"127.0.0.1:{victim_port}",
        }
        haproxy = adoptable(server.data_dir / "runtime" / "router")
        if haproxy is not None:  # the data path is HAProxy: its admin socket, where it is
            env["PROBE_ADMIN_SOCKET"] = str(haproxy[1] / "admin.sock")
        with server.client(team_a) as attacker:
            deploy(attacker, "attacker", "a", probe, env)
        # through the API, team A learns that the victim has a secret, never its value
        api = []
        with server.client(team_a) as attacker:
            seen = attacker.get_revision("victim", 1).env_vars
            api.append(f"the victim's revision: {[(v.id, v.value, v.secret) for v in seen]}")
            for what, read in (
                ("list team b's secrets", lambda: attacker.list_secrets("b")),
                (
                    "rotate team b's secret",
                    lambda: attacker.set_secret("db-password", "x", team="b"),
                ),
                ("read the victim's logs", lambda: list(attacker.logs("victim", tail=10))),
            ):
                try:
                    read()
                except PermissionDeniedError as exc:
                    api.append(f"held: {what}: {str(exc)[:100]}")
                else:
                    api.append(f"BROKE THROUGH: {what}")
        report("tenants: team A reads team B's service through the API", *api)
        assert not [line for line in api if line.startswith("BROKE")], api
        assert password not in " ".join(api)
        # the victim's instance got its password, and its config file, read-only
        env = httpx.get(server.router + "/env", headers={"Host": "victim.localhost"}, timeout=30)
        assert env.status_code == 200 and env.json().get("DB_PASSWORD") == password
        config = httpx.get(server.router + "/config", headers={"Host": "victim.localhost"})
        assert config.json() == {"conf/app.yaml": "pool: 4\n"}
        answer = httpx.get(
            f"{server.router}/attack", headers={"Host": "attacker.localhost"}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        found = answer.json()
        results = found["results"]
        lines = [
            f"{'held' if r['held'] else 'BROKE THROUGH'}: {r['attack']}: {r['saw'][:140]}"
            for r in results
        ]
        report(
            "tenants: team A's app attacks from inside its instance "
            f"(uid {found['uid']}, {found['python']})",
            *lines,
        )
        broken = [r for r in results if not r["held"]]
        assert not broken, json.dumps(broken, indent=1)
        assert password not in answer.text
        assert len(results) == 19
        with contextlib.suppress(BlockingIOError):
            got = canary_udp.recv(100)
            raise AssertionError(f"a datagram from the instance reached the host: {got!r}")
        canary_tcp.close()
        canary_udp.close()
        # what it may do, as any client: call the victim service through the router
        through = httpx.get(
            f"{server.router}/via-router", headers={"Host": "attacker.localhost"}, timeout=30
        )
        assert through.status_code == 200 and through.text == "probe\n", through.text
        # what it printed before trying to erase its log is still there
        # and the platform says that its flood stopped its stdout being logged
        printed: list[str] = []
        for _ in range(100):
            with server.client(team_a) as attacker:
                printed = [line.text for line in attacker.logs("attacker", tail=1000)]
            if any("stdout is no longer logged" in text for text in printed):
                break
            time.sleep(0.1)
        assert "probe: a line the platform must keep" in printed
        assert any("stdout is no longer logged" in text for text in printed), printed[-5:]
        assert found["uid"] != 0 and found["python"] == "/sos/python/bin/python3"
        assert not any("site-packages" in p and "/sos/" not in p for p in found["path"])
        # the victim still serves, and its logs carry nothing written by the attacker
        victim = httpx.get(server.router, headers={"Host": "victim.localhost"}, timeout=30)
        assert victim.status_code == 200 and victim.text == "probe\n"
        logs = server.data_dir / "runtime" / "logs" / "victim"
        assert not list(logs.rglob("injected*"))
    finally:
        server.stop()
        kill_runtime(server.data_dir)
