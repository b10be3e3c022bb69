"""Secrets over real HTTP: per team, write-only, encrypted at rest, used by revisions as
environment variables, refused when missing, never shown to anyone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pydantic
import pytest

from sos import (
    Artifact,
    Client,
    ConflictError,
    EnvVar,
    NotFoundError,
    PermissionDeniedError,
    Revision,
    Service,
    ValidationError,
)
from sos.models import ConfigFile

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "shop"
PASSWORD = "correct horse battery staple"


def uses(secret: str) -> Revision:
    return Revision(
        artifact=Artifact(name="a", version="1"),
        env_vars=[EnvVar(id="DB_PASSWORD", secret=secret), EnvVar(id="MODE", value="prod")],
    )


def test_a_secret_round_trip_is_write_only_and_encrypted_at_rest(
    server: RunningServer, admin: Client
) -> None:
    with server.client(server.token("ci-recs", team="recs")) as recs:
        created = recs.set_secret("db-password", PASSWORD, team="recs")
        assert (created.name, created.team, created.version) == ("db-password", "recs", 1)
        rotated = recs.set_secret("db-password", PASSWORD + "!", team="recs")
        assert rotated.version == 2 and rotated.updated_by == "ci-recs"
        listed = recs.list_secrets("recs")
        assert [(s.name, s.version) for s in listed] == [("db-password", 2)]
        recs.apply(Service(name=SVC, team="recs"))
        recs.create_revision(SVC, uses("db-password"))
        env = recs.get_revision(SVC, 1).env_vars
        assert [(v.id, v.value, v.secret) for v in env] == [
            ("DB_PASSWORD", "", "db-password"),
            ("MODE", "prod", None),
        ]
    # no answer of the API carries the value, to anyone
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    for path in (
        "/teams/recs/secrets",
        f"/services/{SVC}/revisions",
        f"/services/{SVC}/desired",
        f"/services/{SVC}/history",
    ):
        answer = httpx.get(f"{server.url}/api/v1{path}", headers=headers)
        assert answer.status_code == 200 and PASSWORD not in answer.text, path
    # at rest: sealed, not the plain value
    with server.state.store.read() as conn:
        sealed = conn.exec_driver_sql("SELECT sealed FROM secrets").scalars().all()
    assert len(sealed) == 1 and PASSWORD.encode() not in sealed[0]
    # only the backend gets the value, for the instances
    desired = server.state.control.desired(SVC)
    assert desired is not None and desired.secrets == {"db-password": PASSWORD + "!"}
    assert PASSWORD not in repr(desired)


def test_a_revision_using_a_missing_secret_is_a_422(server: RunningServer) -> None:
    with server.client(server.token("ci-recs", team="recs")) as recs:
        recs.apply(Service(name=SVC, team="recs"))
        with pytest.raises(ValidationError, match="no secret 'db-pasword'") as caught:
            recs.create_revision(SVC, uses("db-pasword"))
        assert "sos secret set db-pasword --team recs" in str(caught.value)
        assert recs.list_revisions(SVC) == []
        with pytest.raises(pydantic.ValidationError, match="value or secret"):
            EnvVar(id="X", value="inline", secret="db-password")


def test_secrets_belong_to_their_team(server: RunningServer, admin: Client) -> None:
    admin.set_secret("db-password", PASSWORD, team="recs")
    with server.client(server.token("ci-ads", team="ads")) as ads:
        with pytest.raises(PermissionDeniedError):
            ads.list_secrets("recs")
        with pytest.raises(PermissionDeniedError):
            ads.set_secret("db-password", "mine now", team="recs")
        with pytest.raises(PermissionDeniedError):
            ads.delete_secret("db-password", team="recs")
        # a team's revision cannot reach another team's secret of the same name
        ads.apply(Service(name="ads-svc", team="ads"))
        with pytest.raises(ValidationError, match="team 'ads' has no secret 'db-password'"):
            ads.create_revision("ads-svc", uses("db-password"))
    with server.client(server.token("viewer", role="reader", team="recs")) as reader:
        assert [s.name for s in reader.list_secrets("recs")] == ["db-password"]
        with pytest.raises(PermissionDeniedError, match="read-only"):
            reader.set_secret("db-password", "x", team="recs")


def test_a_secret_in_use_is_not_deleted(server: RunningServer, admin: Client) -> None:
    admin.set_secret("db-password", PASSWORD, team="recs")
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, uses("db-password"))  # the first revision gets all traffic
    with pytest.raises(ConflictError, match="used by shop-00001"):
        admin.delete_secret("db-password", team="recs")
    admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
    admin.set_traffic(SVC, {2: 100})
    admin.delete_secret("db-password", team="recs")
    assert admin.list_secrets("recs") == []
    with pytest.raises(NotFoundError):
        admin.delete_secret("db-password", team="recs")


def test_service_env_is_merged_into_new_revisions_and_kept_by_each(
    server: RunningServer, admin: Client
) -> None:
    admin.set_secret("db-password", PASSWORD, team="recs")
    admin.apply(
        Service(
            name=SVC,
            team="recs",
            env_vars=[
                EnvVar(id="REGION", value="eu"),
                EnvVar(id="MODE", value="staging"),
                EnvVar(id="DB_PASSWORD", secret="db-password"),
            ],
        )
    )
    first = admin.create_revision(
        SVC,
        Revision(
            artifact=Artifact(name="a", version="1"), env_vars=[EnvVar(id="MODE", value="prod")]
        ),
    )
    # the service's variables first, the revision's own wins for MODE; recorded as merged
    assert [(v.id, v.value, v.secret) for v in first.env_vars] == [
        ("REGION", "eu", None),
        ("DB_PASSWORD", "", "db-password"),
        ("MODE", "prod", None),
    ]
    admin.apply(Service(name=SVC, team="recs", env_vars=[EnvVar(id="REGION", value="us")]))
    kept = admin.get_revision(SVC, 1).env_vars[0]
    assert (kept.id, kept.value) == ("REGION", "eu")  # revision 1 keeps what it was made with
    second = admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
    assert [(v.id, v.value) for v in second.env_vars] == [("REGION", "us")]
    entry = admin.history(SVC, limit=5)
    assert any("env set REGION" in e.summary and "removed" in e.summary for e in entry)
    # other teams see names, not values; a missing secret is refused on the service too
    with server.client(server.token("ci-ads", team="ads")) as ads:
        (seen,) = ads.get_service(SVC).env_vars
        assert (seen.id, seen.value, seen.redacted) == ("REGION", "", True)
        assert ads.list_services()[0].env_vars[0].value == ""
    with pytest.raises(ValidationError, match="team 'recs' has no secret 'nope'"):
        admin.apply(Service(name=SVC, team="recs", env_vars=[EnvVar(id="X", secret="nope")]))


def test_config_file_contents_are_for_the_owning_team(server: RunningServer, admin: Client) -> None:
    secret_file = ConfigFile(path="creds.ini", content="password=file-secret-555")
    admin.apply(Service(name=SVC, team="recs", files=[secret_file]))
    admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
    assert admin.get_revision(SVC, 1).files[0].content == "password=file-secret-555"
    token = server.token("ci-ads", team="ads")
    with server.client(token) as ads:
        (seen,) = ads.get_revision(SVC, 1).files
        assert (seen.path, seen.content, seen.redacted) == ("creds.ini", "", True)
        assert ads.get_service(SVC).files[0].content == ""
    for path in (
        f"/services/{SVC}",
        f"/services/{SVC}/revisions",
        f"/services/{SVC}/desired",
        f"/services/{SVC}/history",
    ):
        answer = httpx.get(
            f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200 and "file-secret-555" not in answer.text, path
    # a hidden file sent back is refused, not deployed empty
    hidden = ConfigFile(path="creds.ini", content="", redacted=True)
    with pytest.raises(ValidationError, match=r"creds\.ini came back redacted"):
        admin.create_revision(
            SVC, Revision(artifact=Artifact(name="a", version="1"), files=[hidden])
        )
