"""Auth over real HTTP: 401 without or with an unknown token, 403 for the wrong team or a
read-only token, admins only for tokens, hashed storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pydantic
import pytest

from sos import (
    Artifact,
    AuthenticationError,
    Client,
    EnvVar,
    PermissionDeniedError,
    Revision,
    Service,
    TokenSpec,
    ValidationError,
)
from sos.store import hash_secret

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "sfix-service"
REV = Revision(artifact=Artifact(name="a", version="1"))


def test_no_token_is_401_with_a_hint(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/services")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "SOS_TOKEN" in response.json()["error"]["message"]
    with Client(server.url, "") as anonymous, pytest.raises(AuthenticationError):
        anonymous.list_services()


def test_unknown_token_is_401(server: RunningServer) -> None:
    with (
        Client(server.url, "sos_not-a-real-token") as client,
        pytest.raises(AuthenticationError, match="does not know this token"),
    ):
        client.whoami()


def test_writer_changes_only_its_own_team(server: RunningServer, admin: Client) -> None:
    admin.apply(Service(name="ads-service", team="ads"))
    with server.client(server.token("ci-recs", team="recs")) as recs:
        assert recs.whoami().team == "recs"
        recs.apply(Service(name=SVC, team="recs"))
        recs.create_revision(SVC, REV)
        recs.set_traffic(SVC, {1: 100})
        with pytest.raises(PermissionDeniedError, match="belongs to team 'recs'"):
            recs.apply(Service(name="other", team="ads"))
        with pytest.raises(PermissionDeniedError):
            recs.create_revision("ads-service", REV)
        with pytest.raises(PermissionDeniedError):
            recs.delete_service("ads-service")
        # moving a service to another team needs the right on both
        with pytest.raises(PermissionDeniedError):
            recs.apply(Service(name="ads-service", team="recs"))
        # reads are open to every valid token
        assert {s.name for s in recs.list_services()} == {SVC, "ads-service"}
        with pytest.raises(PermissionDeniedError, match="only admin tokens"):
            recs.create_token("sneaky", role="admin")
    assert admin.get_service("ads-service").team == "ads"


def test_reader_reads_but_never_writes(server: RunningServer, admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, REV)
    with server.client(server.token("dashboard", role="reader")) as reader:
        assert reader.whoami().role == "reader"
        assert reader.get_service(SVC).name == SVC
        assert reader.history(SVC)
        with pytest.raises(PermissionDeniedError, match="read-only"):
            reader.rollback(SVC)
        with pytest.raises(PermissionDeniedError):
            reader.apply(Service(name=SVC, team="recs", description="x"))
    assert admin.get_service(SVC).description == ""


def test_revoked_token_stops_working_at_once(server: RunningServer, admin: Client) -> None:
    secret = server.token("temp", team="recs")
    with server.client(secret) as temp:
        assert temp.whoami().name == "temp"
        admin.revoke_token("temp")
        with pytest.raises(AuthenticationError):
            temp.whoami()


def test_tokens_are_stored_hashed_and_never_listed(server: RunningServer, admin: Client) -> None:
    secret = server.token("ci-recs", team="recs")
    listed = httpx.get(
        f"{server.url}/api/v1/tokens", headers={"Authorization": f"Bearer {server.admin_token}"}
    ).text
    assert secret not in listed and "secret" not in listed
    with server.state.store.read() as conn:
        rows = conn.exec_driver_sql("SELECT secret_hash FROM tokens").scalars().all()
    assert hash_secret(secret) in rows and secret not in rows


def test_last_admin_token_cannot_be_revoked(admin: Client) -> None:
    with pytest.raises(ValidationError, match="last admin token"):
        admin.revoke_token("admin")


def test_writer_token_needs_a_team() -> None:
    with pytest.raises(ValueError, match="needs a team"):
        TokenSpec(name="x", role="writer")


def test_admin_token_file_is_private(server: RunningServer) -> None:
    token_file = server.state.settings.data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip() == server.admin_token


def test_admin_token_from_env_is_accepted(sos_server: Callable[..., RunningServer]) -> None:
    env_token = "automation-admin-token-0123456789"
    server = sos_server(admin_token=env_token)
    with Client(server.url, env_token) as client:
        assert client.whoami().role == "admin"
    assert not (server.state.settings.data_dir / "admin-token").exists()


def _raw_post(url: str, head: bytes, body_chunks: list[bytes]) -> tuple[int, bytes]:
    """A POST over a raw socket, body sent chunk by chunk (stops once the server answers)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed before the rest: what we want to see
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data


def test_a_body_is_not_read_before_the_token_is_checked(server: RunningServer) -> None:
    """A 300 MiB JSON body to an unauthenticated request was once read and parsed before the
    401. Now the answer comes from the headers alone: the body is never sent here."""
    declared = 300 * 2**20
    head = (
        f"POST /api/v1/services/x/revisions HTTP/1.1\r\nHost: sos\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    status, answer = _raw_post(server.url, head, [])
    assert status == 401 and b"no token" in answer
    bad = head.replace(b"Host: sos\r\n", b"Host: sos\r\nAuthorization: Bearer nope\r\n")
    status, answer = _raw_post(server.url, bad, [])
    assert status == 401 and b"does not know this token" in answer


def test_api_bodies_are_capped_even_for_admins(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    big = httpx.put(
        f"{server.url}/api/v1/services/capped",
        content=b"{" + b" " * (2 * 2**20) + b"}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert "SOS_MAX_REQUEST_BYTES" in big.json()["error"]["message"]

    def chunks() -> Any:  # no Content-Length: chunked, cut off once past the cap
        for _ in range(40):
            yield b" " * 65536

    chunked = httpx.put(
        f"{server.url}/api/v1/services/capped",
        content=chunks(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    small = httpx.put(
        f"{server.url}/api/v1/services/capped",
        json={"name": "capped", "team": "recs"},
        headers=headers,
    )
    assert small.status_code in (200, 201), small.text
    huge_env = Revision(artifact=Artifact(name="a", version="1")).model_dump(mode="json")
    huge_env["env_vars"] = [{"id": "BLOB", "value": "x" * 40_000}]
    refused = httpx.post(
        f"{server.url}/api/v1/services/capped/revisions", json=huge_env, headers=headers
    )
    assert refused.status_code == 422 and "32768" in refused.text


def test_env_values_logs_and_metrics_are_for_the_owning_team_and_admins(
    server: RunningServer, admin: Client
) -> None:
    secret_rev = Revision(
        artifact=Artifact(name="a", version="1"),
        env_vars=[EnvVar(id="DB_PASSWORD", value="hunter2"), EnvVar(id="LOG_LEVEL", value="info")],
    )
    with server.client(server.token("ci-recs", team="recs")) as recs:
        recs.apply(Service(name=SVC, team="recs"))
        recs.create_revision(SVC, secret_rev)
        own = recs.get_revision(SVC, 1).env_vars
        assert [(v.value, v.redacted) for v in own] == [("hunter2", False), ("info", False)]
        assert list(recs.logs(SVC, tail=10)) is not None  # its own logs: allowed
    assert admin.get_revision(SVC, 1).env_vars[0].value == "hunter2"
    others = {
        "a writer of another team": server.token("ci-ads", team="ads"),
        "a reader of no team": server.token("dashboard", role="reader"),
    }
    for who, token in others.items():
        with server.client(token) as other:
            seen = [
                other.get_revision(SVC, 1).env_vars,
                other.list_revisions(SVC)[0].env_vars,
                other.desired(SVC).revisions[0].env_vars,
            ]
            for env in seen:
                # the names show (a value exists), never the values
                assert [(v.id, v.value, v.redacted) for v in env] == [
                    ("DB_PASSWORD", "", True),
                    ("LOG_LEVEL", "", True),
                ], who
            raw = httpx.get(
                f"{server.url}/api/v1/services/{SVC}/history",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert raw.status_code == 200 and "hunter2" not in raw.text, who
            with pytest.raises(PermissionDeniedError, match="only that team's tokens and admins"):
                list(other.logs(SVC, tail=10))
            with pytest.raises(PermissionDeniedError, match="metrics"):
                other.metrics(SVC)
    # a hidden value sent back (a copy of what another team saw) is refused, not deployed
    with server.client(server.token("ci-recs-2", team="recs")) as recs:
        copied = Revision(
            artifact=Artifact(name="a", version="1"),
            env_vars=[EnvVar(id="DB_PASSWORD", value="", redacted=True)],
        )
        with pytest.raises(ValidationError, match="DB_PASSWORD came back redacted"):
            recs.create_revision(SVC, copied)


def test_tokens_expire_and_say_when_they_were_last_used(
    server: RunningServer, admin: Client
) -> None:
    created = admin.create_token("ci-temp", team="recs", expires_in=timedelta(hours=1))
    assert created.expires_at is not None
    assert timedelta(minutes=59) < created.expires_at - created.created_at <= timedelta(hours=1)
    listed = {t.name: t for t in admin.list_tokens()}
    assert listed["ci-temp"].last_used_at is None  # never used yet
    with server.client(created.secret) as temp:
        assert temp.whoami().name == "ci-temp"
        used = {t.name: t for t in admin.list_tokens()}["ci-temp"].last_used_at
        assert used is not None
        store = server.state.store
        real = store.clock
        store.clock = lambda: real() + timedelta(hours=2)  # two hours later
        try:
            with pytest.raises(AuthenticationError, match="token 'ci-temp' expired at"):
                temp.whoami()
        finally:
            store.clock = real
    with pytest.raises(pydantic.ValidationError):
        TokenSpec(name="too-short", team="recs", expires_in_seconds=5)
