"""The artifact store over real HTTP: push, immutability, digests, size limit, path
safety, who may push, and revisions resolving Artifact(name, version) to the stored digest."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sos_artifacts import make_artifact
from sos_server import RunningServer

from sos.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from sos.models import Artifact, RevisionSpec, ServiceSpec
from sos.runtime.fake import FakeBackend
from sos.server import artifacts as plugin

PROJECTS = Path(__file__).parents[1] / "build" / "projects"


@pytest.fixture
def store_server(sos_server: Callable[..., RunningServer]) -> RunningServer:
    """A server with the artifact plug-in configured at start-up, as `sos server` runs it."""
    running = sos_server()
    plugin.configure(running.state)
    running.state.control.resolver = running.state.resolver
    return running


def raw_put(
    server: RunningServer, name: str, version: str, body: bytes | object, **headers: str
) -> httpx.Response:
    return httpx.put(
        f"{server.url}/api/v1/artifacts/{name}/{version}",
        content=body,  # type: ignore[arg-type]
        headers={"Authorization": f"Bearer {server.admin_token}", **headers},
        timeout=30,
    )


def encoded(meta: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(meta).encode()).decode().rstrip("=")


def test_push_list_get_and_download_by_digest(store_server: RunningServer, tmp_path: Path) -> None:
    path = make_artifact(tmp_path, "web", "1.0.0", b"console.log('hi')\n" * 1000)
    with store_server.client() as api:
        pushed = api.push_artifact(path)
        assert pushed.pushed_by == "admin" and pushed.pushed_at is not None
        assert pushed.size == path.stat().st_size
        assert [(m.name, m.version) for m in api.list_artifacts()] == [("web", "1.0.0")]
        assert api.get_artifact("web", "1.0.0").digest == pushed.digest
        target = api.download_artifact(pushed.digest, tmp_path / "downloaded.js")
    assert target.read_bytes() == path.read_bytes()


def test_same_bytes_again_is_a_200_no_op(store_server: RunningServer, tmp_path: Path) -> None:
    path = make_artifact(tmp_path, "web", "1.0.0", b"same")
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    headers = {"X-SOS-Digest": meta["digest"], "X-SOS-Metadata": encoded(meta)}
    first = raw_put(store_server, "web", "1.0.0", b"same", **headers)
    again = raw_put(store_server, "web", "1.0.0", b"same", **headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["pushed_at"] == again.json()["pushed_at"]


def test_other_bytes_under_a_pushed_version_are_a_409(
    store_server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    one = make_artifact(tmp_path / "a", "web", "1.0.0", b"one")
    (tmp_path / "b").mkdir()
    two = make_artifact(tmp_path / "b", "web", "1.0.0", b"two")
    with store_server.client() as api:
        api.push_artifact(one)
        with pytest.raises(ConflictError, match=r"web 1.0.0 already exists with other content"):
            api.push_artifact(two)
        assert (
            api.get_artifact("web", "1.0.0").digest
            == "sha256:" + hashlib.sha256(b"one").hexdigest()
        )
    store = store_server.state.extra["artifacts"].store
    assert not store.exists("sha256:" + hashlib.sha256(b"two").hexdigest())


def test_bytes_that_do_not_match_the_digest_are_refused(
    store_server: RunningServer, tmp_path: Path
) -> None:
    path = make_artifact(tmp_path, "web", "1.0.0", b"real")
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    answer = raw_put(
        store_server,
        "web",
        "1.0.0",
        b"tampered",
        **{"X-SOS-Digest": meta["digest"], "X-SOS-Metadata": encoded(meta)},
    )
    assert answer.status_code == 422
    assert "not the expected" in answer.json()["error"]["message"]
    store = store_server.state.extra["artifacts"].store
    assert list(store.digests()) == []
    with store_server.client() as api:
        assert api.list_artifacts() == []


def test_oversized_uploads_are_a_413_declared_or_streamed(
    sos_server: Callable[..., RunningServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOS_MAX_ARTIFACT_BYTES", "1000")
    server = sos_server()
    plugin.configure(server.state)
    big = make_artifact(tmp_path, "web", "1.0.0", b"x" * 5000)
    with (
        server.client() as api,
        pytest.raises(PayloadTooLargeError, match="above the server's limit of 1000"),
    ):
        api.push_artifact(big)
    meta = json.loads(big.with_name(big.name + ".json").read_text())

    def chunked():  # no Content-Length: the limit must cut the stream itself
        for _ in range(5):
            yield b"x" * 1000

    answer = raw_put(
        server,
        "web",
        "1.0.0",
        chunked(),
        **{"X-SOS-Digest": meta["digest"], "X-SOS-Metadata": encoded(meta)},
    )
    assert answer.status_code == 413
    assert "larger than the limit" in answer.json()["error"]["message"]
    assert list(server.state.extra["artifacts"].store.digests()) == []


@pytest.mark.parametrize(
    ("name", "version"), [("bad..name", "1.0"), ("web", "1..0"), ("-web", "1.0")]
)
def test_unsafe_names_and_versions_are_refused(
    store_server: RunningServer, name: str, version: str
) -> None:
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    answer = raw_put(
        store_server, name, version, b"x", **{"X-SOS-Digest": digest, "X-SOS-Metadata": encoded({})}
    )
    assert answer.status_code == 422


def test_encoded_slash_in_a_name_never_reaches_the_store(store_server: RunningServer) -> None:
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    answer = raw_put(store_server, "..%2F..%2Fetc", "1.0", b"x", **{"X-SOS-Digest": digest})
    assert answer.status_code in (404, 422)
    assert list(store_server.state.extra["artifacts"].store.digests()) == []


def test_a_zip_artifact_with_an_escaping_entry_is_refused(
    store_server: RunningServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", "")
        archive.writestr("site-packages/../../../home/evil.py", "boom")
    path = make_artifact(tmp_path, "py", "1.0.0", buffer.getvalue(), language="python")
    with (
        store_server.client() as api,
        pytest.raises(ValidationError, match=r"unsafe entry .*climbs out"),
    ):
        api.push_artifact(path)
    assert list(store_server.state.extra["artifacts"].store.digests()) == []


def test_readers_cannot_push_and_names_belong_to_the_first_team(
    store_server: RunningServer, tmp_path: Path
) -> None:
    path = make_artifact(tmp_path, "recs", "1.0.0", b"one")
    (tmp_path / "v2").mkdir()
    second = make_artifact(tmp_path / "v2", "recs", "2.0.0", b"two")
    reader = store_server.token("viewer", role="reader")
    team_a = store_server.token("alice", role="writer", team="team-a")
    team_b = store_server.token("bob", role="writer", team="team-b")
    with (
        store_server.client(reader) as api,
        pytest.raises(PermissionDeniedError, match="read-only"),
    ):
        api.push_artifact(path)
    with store_server.client(team_a) as api:
        assert api.push_artifact(path).pushed_by == "alice"
    with store_server.client(team_b) as api:
        with pytest.raises(PermissionDeniedError, match="belongs to team 'team-a'"):
            api.push_artifact(second)
        assert [m.version for m in api.list_artifacts("recs")] == ["1.0.0"]  # reading is open
    with store_server.client(team_a) as api:
        assert api.push_artifact(second).version == "2.0.0"


def test_revision_resolves_the_artifact_to_its_digest(
    store_server: RunningServer, tmp_path: Path
) -> None:
    path = make_artifact(tmp_path, "recs", "1.0.0", b"bundle")
    with store_server.client() as api:
        pushed = api.push_artifact(path)
        api.apply(ServiceSpec(name="recs", team="team-a"))
        revision = api.create_revision(
            "recs", RevisionSpec(artifact=Artifact(name="recs", version="1.0.0"))
        )
        assert revision.artifact.digest == pushed.digest
        with pytest.raises(
            NotFoundError,
            match=r"recs 9.9.9 is not in the artifact store \(known versions: 1.0.0\).*sos push",
        ):
            api.create_revision(
                "recs", RevisionSpec(artifact=Artifact(name="recs", version="9.9.9"))
            )
        assert len(api.list_revisions("recs")) == 1


def test_revision_dry_run_resolves_the_artifact_and_writes_nothing(
    store_server: RunningServer, tmp_path: Path
) -> None:
    path = make_artifact(tmp_path, "recs", "1.0.0", b"bundle")
    with store_server.client() as api:
        pushed = api.push_artifact(path)
        # the service need not exist yet: `sos deploy` asks this before applying one
        checked = api.create_revision(
            "new-svc", RevisionSpec(artifact=Artifact(name="recs", version="1.0.0")), dry_run=True
        )
        assert checked.artifact.digest == pushed.digest and checked.id is None
        with pytest.raises(NotFoundError, match=r"recs 2.0.0 is not in the artifact store"):
            api.create_revision(
                "new-svc",
                RevisionSpec(artifact=Artifact(name="recs", version="2.0.0")),
                dry_run=True,
            )
        assert [s.name for s in api.list_services()] == []
        api.apply(ServiceSpec(name="new-svc", team="team-a"))
        api.create_revision(
            "new-svc", RevisionSpec(artifact=Artifact(name="recs", version="1.0.0")), dry_run=True
        )
        assert api.list_revisions("new-svc") == []


def test_blob_download_of_an_unknown_digest_is_a_404(store_server: RunningServer) -> None:
    answer = httpx.get(
        f"{store_server.url}/api/v1/blobs/sha256:{'0' * 64}",
        headers={"Authorization": f"Bearer {store_server.admin_token}"},
    )
    assert answer.status_code == 404
    bad = httpx.get(
        f"{store_server.url}/api/v1/blobs/sha256:..%2F..%2Fetc",
        headers={"Authorization": f"Bearer {store_server.admin_token}"},
    )
    assert bad.status_code in (404, 422)


@pytest.mark.slow
def test_sos_build_push_then_a_revision_runs_the_pushed_digest(
    store_server: RunningServer, tmp_path: Path
) -> None:
    root = shutil.copytree(PROJECTS / "flask-hello", tmp_path / "flask-hello")
    env = {
        **os.environ,
        "SOS_URL": store_server.url,
        "SOS_TOKEN": store_server.admin_token,
        "SOS_HOME": str(tmp_path / "home"),
        "SOS_CACHE_DIR": str(tmp_path.parent / "push-build-cache"),
    }
    sos = str(Path(sys.executable).parent / "sos")
    done = subprocess.run(
        [sos, "build", str(root), "--push", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout)
    assert built["pushed"]["digest"] == built["digest"]
    again = subprocess.run(
        [sos, "push", built["path"]], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "pushed flask-hello 1.0.0" in again.stdout
    local = subprocess.run(
        [sos, "artifacts", "--local", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)[0]["extra"]["pushed_to"] == store_server.url
    listed = subprocess.run(
        [sos, "artifacts", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert [a["digest"] for a in json.loads(listed.stdout)] == [built["digest"]]
    with store_server.client() as api:
        api.apply(ServiceSpec(name="hello", team="web"))
        revision = api.create_revision(
            "hello", RevisionSpec(artifact=Artifact(name="flask-hello", version="1.0.0"))
        )
        assert revision.artifact.digest == built["digest"]
        # runs: the reconciler hands the backend the revision with that digest (in the
        # background: wait for it, generously, as a loaded machine may take a while)
        assert api.wait_ready("hello", revision.id or "", timeout=120).status.ready
    backend = store_server.state.backend
    assert isinstance(backend, FakeBackend)
    (applied,) = backend.applied["hello"].revisions
    assert (applied.id, applied.artifact.digest) == (revision.id, built["digest"])
    assert store_server.state.artifact_path is not None
    assert (
        store_server.state.artifact_path(built["digest"]).read_bytes()
        == Path(built["path"]).read_bytes()
    )


def test_a_revision_whose_options_cannot_apply_to_its_artifact_is_a_422(
    store_server: RunningServer, tmp_path: Path
) -> None:
    path = make_artifact(tmp_path, "web", "1.0.0", b"console.log('hi')\n")
    with store_server.client() as api:
        api.push_artifact(path)
        api.apply(ServiceSpec(name="web", team="recs"))
        refused = RevisionSpec.model_validate(
            {
                "artifact": {"name": "web", "version": "1.0.0"},
                "gunicorn_config": {"worker_count": 4},
            }
        )
        with pytest.raises(ValidationError, match="gunicorn_config does not apply") as caught:
            api.create_revision("web", refused)
        assert caught.value.details.get("field") == "gunicorn_config"
        assert api.list_revisions("web") == []  # nothing was created
        api.create_revision("web", RevisionSpec(artifact=Artifact(name="web", version="1.0.0")))
