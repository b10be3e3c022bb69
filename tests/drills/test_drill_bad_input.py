"""Bad-input drill: malformed deploy files, pipeline configs with unknown operators,
artifacts with path tricks, oversized uploads, wrong tokens and other teams' tokens.

Held: each is refused with an error that says what, where and what to do (a 4xx for the API,
exit code 1 and `error: ...` for the CLI, never a traceback or a 5xx), and nothing is lost
or half-made: the deployed service, its revisions, traffic, artifacts and tokens are as
they were, and it keeps serving."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from drills_harness import (
    SOS,
    TOKEN,
    SosServer,
    kill_runtime,
    report,
    served_split,
    until,
)
from drills_platform import MOVIELENS, REPO, SERVICE, Built, Platform, cli, movielens_data

from sos import (
    Artifact,
    ArtifactMetadata,
    AuthenticationError,
    Client,
    EnvVar,
    HealthCheck,
    PayloadTooLargeError,
    PermissionDeniedError,
    Revision,
    Service,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _state(client: Client) -> dict[str, object]:
    """What must survive bad input untouched."""
    service = client.get_service(SERVICE)
    return {
        "services": sorted(s.name for s in client.list_services()),
        "service": (service.team, service.resource_version, service.latest_revision),
        "revisions": [(r.id, r.artifact.digest) for r in client.list_revisions(SERVICE)],
        "traffic": [(r.revision, r.percent, r.tag) for r in client.get_traffic(SERVICE).routes],
        "artifacts": sorted((a.name, a.version, a.digest) for a in client.list_artifacts()),
    }


def _blobs(server: SosServer) -> set[str]:
    root = server.data_dir / "artifacts"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- deploy files

BAD_DEPLOY_FILES: dict[str, tuple[str, str]] = {
    # name: (file name, content); the error must name the file and say what is wrong
    "YAML that does not parse": (
        "broken.yaml",
        "service: {name: movielens, team: recs\nrevision: [\n",
    ),
    "an unknown top-level key": (
        "typo.yaml",
        "service: {name: movielens, team: recs}\nrevison: {artifact: {name: a, version: '1'}}\n",
    ),
    "a percent that is not a number": (
        "percent.yaml",
        "service: {name: movielens, team: recs}\ntraffic: [{revision: 1, percent: lots}]\n",
    ),
    "traffic that does not add up to 100": (
        "sum.yaml",
        "service: {name: movielens, team: recs}\n"
        "traffic: [{revision: 1, percent: 50}, {revision: 2, percent: 20}]\n",
    ),
    "traffic to a revision that does not exist": (
        "ghost.yaml",
        "service: {name: movielens, team: recs}\ntraffic: [{revision: 7, percent: 100}]\n",
    ),
    "a bad service name": (
        "name.yaml",
        "service: {name: Movie_Lens, team: recs}\n",
    ),
    "a Python file that raises": (
        "raises.py",
        "from sos import Service\nservice = Service(name='movielens', team=TEAM)\n",
    ),
    "a Python file without a service": (
        "empty.py",
        "from sos import Artifact\nartifact = Artifact(name='x', version='1')\n",
    ),
    "memory that is not a quantity": (
        "memory.yaml",
        "service: {name: movielens, team: recs}\n"
        "revision: {artifact: {name: movielens-recs, version: 1.0.0}, "
        "resources: {memory: lots}}\n",
    ),
    "an artifact never pushed, for a new service": (
        "unpushed.yaml",
        "service: {name: brand-new, team: recs}\n"
        "revision: {artifact: {name: never-pushed, version: 0.1.0}}\n",
    ),
}


def test_malformed_deploy_files_are_refused_and_change_nothing(
    platform: Platform, sos_home: Path, tmp_path: Path
) -> None:
    with platform.server.client() as client:
        before = _state(client)
    rows = []
    for case, (name, content) in BAD_DEPLOY_FILES.items():
        path = tmp_path / name
        path.write_text(content)
        done = cli(platform.server, sos_home, "deploy", str(path))
        error = done.stderr.strip()
        rows.append(f"{case}: {error}")
        assert done.returncode == 1, f"{case}: {done.stdout} {done.stderr}"
        assert error.startswith("error: ") and "Traceback" not in done.stderr, error
        assert name in error or "brand-new" in error or "never-pushed" in error, error
    with platform.server.client() as client:
        after = _state(client)
    report(
        f"bad input: {len(BAD_DEPLOY_FILES)} malformed deploy files, `sos deploy` each",
        *rows,
        "every one: exit code 1, one error line naming the file; services, revisions, "
        "traffic and artifacts unchanged (no empty service left by the unpushed artifact)",
    )
    assert after == before
    assert "brand-new" not in after["services"]  # type: ignore[operator]


# --------------------------------------------------------------------------- configs


def test_configs_with_unknown_operators_are_refused_and_the_last_good_one_serves(
    movielens: Built, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    operators = MOVIELENS / "movielens_operators.py"
    bad.write_text(
        "name: bad\nitem_type: movieId\nincludes:\n  - PopularMovie: {n: 10}\n"
        f"imports: [{operators}]\n"
    )
    validate = subprocess.run(
        [str(Path(SOS).parent / "flight"), "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    said = (validate.stdout + validate.stderr).strip()
    assert validate.returncode != 0 and "Traceback" not in said, said
    assert "PopularMovie" in said and "bad.yaml" in said, said

    # a revision whose configs folder holds a config with an unknown operator: it becomes
    # ready, serves the good configs, and says what is wrong with the bad one; then a good
    # config is broken while serving: the last good version keeps serving. The folder is
    # the developer's, edited in place: a single-tenant server (sandbox=none), the only
    # kind whose instances see a folder of the machine
    server = SosServer(tmp_path / "data", SOS_SANDBOX="none")
    try:
        with server.client() as client:
            assert client.server_info().isolation.startswith("NOT sandboxed")
            client.push_artifact(movielens[0], metadata=movielens[1])
        said_here = _configs_drill(server, movielens, tmp_path, bad, operators)
    finally:
        server.stop()
        kill_runtime(server.data_dir)
    report(
        "bad input: pipeline configs with unknown operators (single-tenant server)",
        f"flight validate: {said.splitlines()[-1]}",
        *said_here,
    )


def _configs_drill(
    server: SosServer, movielens: Built, tmp_path: Path, bad: Path, operators: Path
) -> list[str]:
    configs = tmp_path / "pipelines"
    configs.mkdir()
    for source in (MOVIELENS / "pipelines").glob("*.yaml"):
        text = source.read_text().replace("[../movielens_operators.py]", "[movielens_operators]")
        (configs / source.name).write_text(text)
    (configs / "bad.yaml").write_text(
        bad.read_text().replace(f"[{operators}]", "[movielens_operators]")
    )
    name = "movielens-configs"
    with server.client() as client:
        client.apply(Service(name=name, team="recs"))
        revision = client.create_revision(
            name,
            Revision(
                artifact=Artifact(name=movielens[1].name, version=movielens[1].version),
                env_vars=[
                    EnvVar(id="MOVIELENS_DIR", value=str(movielens_data())),
                    EnvVar(id="MOVIELENS_PIPELINES", value=str(configs)),
                ],
                health_check=HealthCheck(readiness_probe="/readyz"),
            ),
        )
        assert revision.id is not None
        client.wait_ready(name, revision.id, timeout=180)
    host = {"Host": f"{name}.localhost"}
    with httpx.Client(base_url=server.router, headers=host, timeout=30) as http:
        shown = http.get("/pipelines/bad").json()
        assert shown["status"] == "invalid", shown
        assert "PopularMovie" in json.dumps(shown["error"]), shown
        run = http.post("/pipelines/bad/execute", json={})
        assert run.status_code == 404, run.text
        assert http.get("/recs/for_user", params={"user_id": 1}).status_code == 200
        v1 = configs / "recommend_v1.yaml"
        v1.write_text(v1.read_text().replace("- PopularMovies:", "- PopularMovie:", 1))
        until(
            lambda: http.get("/pipelines/recommend_v1").json()["status"] == "rejected",
            60,
            "the broken v1 to be rejected",
        )
        rejected = http.get("/pipelines/recommend_v1").json()
        served = http.get("/recs/for_user", params={"user_id": 1, "version": "v1"})
        assert served.status_code == 200 and len(served.json()["movieId"]) == 10, served.text
        missing = http.get("/recs/for_user", params={"user_id": "one"})
        assert missing.status_code == 422, missing.text
    return [
        f"a deployed revision with it in its configs: ready; /pipelines/bad: invalid "
        f"({json.dumps(shown['error'])[:140]}...); execute: 404",
        f"a config broken while serving: rejected ({json.dumps(rejected.get('error'))[:120]}"
        "...); the last good v1 kept answering 200 with 10 movies",
        f"user_id=one: 422 {missing.json().get('error', '')[:100]}",
    ]


# --------------------------------------------------------------------------- artifacts


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", b"print('hello')\n")
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            archive.writestr(info, data)
        if symlink is not None:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16) | 0x20  # a symbolic link
            archive.writestr(info, symlink)
    return buffer.getvalue()


def _put(
    server: SosServer, name: str, version: str, data: bytes, token: str = TOKEN
) -> httpx.Response:
    """PUT an artifact as a hostile client would: any name, version and bytes."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    metadata = {
        "name": name,
        "version": version,
        "language": "python",
        "runtime_version": "3.11",
        "entry_point": "__main__",
        "digest": digest,
        "size": len(data),
        "created_by": "drill",
        "created_at": datetime.now(UTC).isoformat(),
        "filename": f"{name}-{version}.pyz",
    }
    return httpx.put(
        f"{server.url}/api/v1/artifacts/{name}/{version}",
        content=data,
        headers={
            "Authorization": f"Bearer {token}",
            "X-SOS-Digest": digest,
            "X-SOS-Metadata": base64.urlsafe_b64encode(json.dumps(metadata).encode()).decode(),
        },
        timeout=60,
    )


def test_artifacts_with_path_tricks_are_refused_and_nothing_is_stored(platform: Platform) -> None:
    server = platform.server
    with server.client() as client:
        before = _state(client)
    blobs = _blobs(server)
    attempts: dict[str, Callable[[], httpx.Response]] = {
        "an entry climbing out (../../evil.py)": lambda: _put(
            server, "tricks", "1.0.0", _zip({"../../evil.py": b"x"})
        ),
        "an absolute entry (/etc/cron.d/evil)": lambda: _put(
            server, "tricks", "1.0.1", _zip({"/etc/cron.d/evil": b"x"})
        ),
        "a symbolic link entry (-> /etc/passwd)": lambda: _put(
            server, "tricks", "1.0.2", _zip({}, symlink="/etc/passwd")
        ),
        "a name with ../ (%2E%2E%2F)": lambda: _put(server, "..%2F..%2Fetc", "1.0.0", b"x"),
        "a version with ../": lambda: _put(server, "tricks", "..%2F..%2Fsos.db", b"x"),
        "a .pyz that is no zip": lambda: _put(server, "tricks", "1.0.3", b"not a zip at all"),
        "a blob digest with ../": lambda: httpx.get(
            f"{server.url}/api/v1/blobs/..%2F..%2Fsos.db",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ),
    }
    rows = []
    for case, attempt in attempts.items():
        answer = attempt()
        message = answer.json().get("error", {}).get("message", answer.text)
        rows.append(f"{case}: {answer.status_code} {message[:150]}")
        assert 400 <= answer.status_code < 500, f"{case}: {answer.status_code} {answer.text}"
    with server.client() as client:
        after = _state(client)
    report("bad input: artifacts with path tricks", *rows, "nothing stored, no blob written")
    assert after == before
    assert _blobs(server) == blobs


def test_oversized_upload_is_refused_with_the_limit_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    server = SosServer(tmp_path / "data", SOS_MAX_ARTIFACT_BYTES=str(1 << 20))
    try:
        big = _zip({"payload.bin": os.urandom(3 << 20)})  # 3 MiB that do not compress
        answer = _put(server, "big", "1.0.0", big)
        error = answer.json()["error"]["message"]
        with server.client() as client:
            with pytest.raises(PayloadTooLargeError):
                path = tmp_path / "big-1.0.0.pyz"
                path.write_bytes(big)
                digest = "sha256:" + hashlib.sha256(big).hexdigest()
                client.push_artifact(
                    path,
                    metadata=ArtifactMetadata(
                        name="big",
                        version="1.0.0",
                        language="python",
                        runtime_version="3.11",
                        entry_point="__main__",
                        digest=digest,
                        size=len(big),
                        created_by="drill",
                        created_at=datetime.now(UTC),
                    ),
                )
            assert client.list_artifacts() == []  # the same connection works on
        huge = httpx.put(
            f"{server.url}/api/v1/services/huge",
            json={"name": "huge", "team": "recs", "description": "x" * (8 << 20)},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
        leftovers = list((server.data_dir / "artifacts" / "tmp").iterdir())
        report(
            "bad input: oversized uploads (server limit SOS_MAX_ARTIFACT_BYTES=1 MiB)",
            f"3 MiB artifact: {answer.status_code} {error}",
            f"the same through the client: PayloadTooLargeError; the client's next request "
            f"works; staged files left: {len(leftovers)}",
            f"an 8 MiB JSON body: {huge.status_code} {huge.json()['error']['message'][:120]}",
        )
        assert answer.status_code == 413 and "SOS_MAX_ARTIFACT_BYTES" in error
        # refused from its Content-Length, before the 8 MiB are read
        assert huge.status_code == 413 and "SOS_MAX_REQUEST_BYTES" in huge.text
        assert not leftovers
    finally:
        server.stop()


# --------------------------------------------------------------------------- tokens


def test_wrong_and_other_teams_tokens_are_refused_and_change_nothing(
    platform: Platform, sos_home: Path
) -> None:
    server = platform.server
    with server.client() as admin:
        reader = admin.create_token("drill-reader", role="reader").secret
        search = admin.create_token("drill-search", role="writer", team="search").secret
        revoked = admin.create_token("drill-revoked", role="writer", team="recs").secret
        admin.revoke_token("drill-revoked")
        before = _state(admin)
    rows = []
    anonymous = httpx.get(f"{server.url}/api/v1/services", timeout=30)
    rows.append(f"no token, a read: {anonymous.status_code} {anonymous.json()['error']['message']}")
    assert anonymous.status_code == 401
    cases: dict[str, tuple[str, type[Exception], Callable[[Client], object]]] = {
        "a made-up token, a read": ("sos_" + "x" * 43, AuthenticationError, lambda c: c.whoami()),
        "a revoked token, a traffic change": (
            revoked,
            AuthenticationError,
            lambda c: c.set_traffic(SERVICE, {1: 100}),
        ),
        "a reader, a traffic change": (
            reader,
            PermissionDeniedError,
            lambda c: c.set_traffic(SERVICE, {1: 100}),
        ),
        "a reader, a token for itself": (
            reader,
            PermissionDeniedError,
            lambda c: c.create_token("mine", role="admin"),
        ),
        "team search, a rollback of team recs' service": (
            search,
            PermissionDeniedError,
            lambda c: c.rollback(SERVICE),
        ),
        "team search, a revision of team recs' service": (
            search,
            PermissionDeniedError,
            lambda c: c.create_revision(SERVICE, c.get_revision(SERVICE, 1)),
        ),
        "team search, taking the service over": (
            search,
            PermissionDeniedError,
            lambda c: c.apply(Service(name=SERVICE, team="search")),
        ),
        "team search, deleting it": (
            search,
            PermissionDeniedError,
            lambda c: c.delete_service(SERVICE),
        ),
    }
    for case, (token, error, attempt) in cases.items():
        with Client(server.url, token) as client, pytest.raises(error) as caught:
            attempt(client)
        rows.append(f"{case}: {type(caught.value).__name__}: {caught.value}"[:200])
    deploy = cli(server, sos_home, "deploy", str(MOVIELENS / "deploy.py"), SOS_TOKEN=search)
    rows.append(f"team search, sos deploy of it: {deploy.stderr.strip()}"[:200])
    with server.client() as admin:
        after = _state(admin)
    report("bad input: wrong tokens and other teams' tokens", *rows, "state unchanged")
    assert deploy.returncode == 1 and "team" in deploy.stderr, deploy.stderr
    assert after == before
    assert sum(served_split(server.router, platform.host, 10, "/healthz").values()) == 10


def test_api_errors_say_what_where_and_what_to_do(platform: Platform) -> None:
    """A sample of plain API mistakes: each a 4xx in the one error shape, naming the field."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{platform.server.url}/api/v1"
    mistakes = {
        "JSON that does not parse": ("PUT", f"{url}/services/x", b"{not json"),
        "a body of the wrong shape": ("PUT", f"{url}/services/x", b"[1, 2]"),
        "a revision without an artifact": ("POST", f"{url}/services/{SERVICE}/revisions", b"{}"),
        "negative memory": (
            "POST",
            f"{url}/services/{SERVICE}/revisions",
            b'{"artifact": {"name": "a", "version": "1"}, "resources": {"memory": "-1Gi"}}',
        ),
        "traffic to 150%": (
            "PUT",
            f"{url}/services/{SERVICE}/traffic",
            b'{"routes": [{"revision": "1", "percent": 150}]}',
        ),
        "a revision ref that is no number": ("GET", f"{url}/services/{SERVICE}/revisions/abc", b""),
        "changing a revision (immutable)": (
            "PUT",
            f"{url}/services/{SERVICE}/revisions/1",
            b"{}",
        ),
        "a logs tail of -5": ("GET", f"{url}/services/{SERVICE}/logs?tail=-5", b""),
    }
    rows = []
    with httpx.Client(headers={**headers, "Content-Type": "application/json"}) as http:
        for case, (method, target, body) in mistakes.items():
            answer = http.request(method, target, content=body or None)
            error = answer.json().get("error", {})
            rows.append(f"{case}: {answer.status_code} {error.get('message', '')[:140]}")
            assert 400 <= answer.status_code < 500, f"{case}: {answer.text}"
            assert error.get("type") and error.get("message"), answer.text
    report("bad input: API mistakes", *rows)
