"""Remote builds over real HTTP: upload, queue, sandboxed build, the artifact in the store
with its provenance, failure with the log, cancel, timeout, queue positions, who may, a
builder that never sees the server's environment, the lock file a build resolved written
beside the project, and old build records pruned."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sos_builds import (
    PROJECTS,
    SENTINEL,
    build_server,
    flooding_project,
    longest_line,
    make_builder,
    slow_project,
    unpinned_project,
    wait_state,
    wsgi_project,
)
from sos_server import RunningServer

from sos.build.errors import BuildFailedError, ProjectError
from sos.build.source import pack_source
from sos.errors import (
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from sos.models import Build, BuildLock
from sos.server.build_sandbox import BuilderEnvironment
from sos.server.builds import BuildService


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> BuilderEnvironment:
    return make_builder(tmp_path_factory.mktemp("builder"))


@pytest.fixture
def server(sos_server: Callable[..., RunningServer], builder: BuilderEnvironment) -> RunningServer:
    return build_server(sos_server, builder)


def test_remote_build_stores_the_artifact_with_its_provenance(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "tick"
    shutil.copytree(PROJECTS / "command-app", root)
    (root / "notes.txt").write_text("left out\n")
    (root / ".sosignore").write_text("notes.txt\n")
    packed = pack_source(root)
    assert "notes.txt" not in packed.files and ".sosignore" in packed.files
    with server.client() as api:
        done = api.build(root)
        assert done.state == "succeeded" and done.reason is None
        assert done.source_digest == packed.digest and done.source_size == packed.size
        assert [s.state for s in done.steps] == ["done"] * len(done.steps)
        assert done.steps[0].name == "Inspect the project" and len(done.steps) >= 3
        assert all(s.started_at and s.finished_at for s in done.steps)
        meta = done.artifact
        assert meta is not None and (meta.name, meta.version) == ("tick-server", "2.0.0")
        stored = api.get_artifact("tick-server", "2.0.0")
        assert stored.digest == meta.digest and stored.pushed_by == "admin"
        prov = stored.extra["provenance"]
        assert prov["source_digest"] == packed.digest
        assert prov["builder"]["kind"] == "remote"
        assert prov["builder"]["where"] == server.state.extra["builds"].builder.isolation
        assert prov["builder"]["build"] == done.id
        assert prov["dependencies"] == stored.extra["packages"]
        assert prov["log_digest"] == done.log_digest
        log_file = server.state.extra["builds"].log_file(done.id)
        assert done.log_digest == "sha256:" + hashlib.sha256(log_file.read_bytes()).hexdigest()
        events = list(api.build_events(done.id, follow=False))
        kinds = [e["event"] for e in events]
        assert kinds[0] == "state" and "plan" in kinds and "begin" in kinds and "end" in kinds
        assert events[-1] == {**events[-1], "event": "state", "state": "succeeded"}
        assert "== the build tools' log" in api.build_log(done.id)
        assert [b.id for b in api.list_builds()] == [done.id]
        assert api.list_builds(limit=1) == api.list_builds()[:1]
        target = api.download_artifact(meta.digest, tmp_path / "tick.pyz")
        # the same source again: the earlier build's artifact, at once; --no-cache builds
        again = api.build(root)
        assert again.state == "succeeded" and again.artifact == stored
        assert [(s.name, s.detail) for s in again.steps] == [
            ("Reuse the build of the same source", done.id)
        ]
        assert f"was built by build {done.id}" in api.build_log(again.id)
        unknown = httpx.post(
            f"{server.url}/api/v1/builds?reuse_only=true",
            headers={
                "Authorization": f"Bearer {server.admin_token}",
                "X-SOS-Source-Digest": "sha256:" + "0" * 64,
            },
        )
        assert unknown.status_code == 404 and "upload it" in unknown.text
        fresh = api.build(root, no_cache=True)
        assert len(fresh.steps) == len(done.steps) and fresh.artifact == stored
    assert hashlib.sha256(target.read_bytes()).hexdigest() == meta.digest.removeprefix("sha256:")


def test_the_builder_never_sees_the_server_environment(
    server: RunningServer, tmp_path: Path
) -> None:
    data_dir = server.state.settings.data_dir
    probe = (
        "import json, os, sys\n"
        "print('PROBE-PATH ' + json.dumps(sys.path))\n"
        "print('PROBE-ENV ' + json.dumps(dict(os.environ)))\n"
        "print('PROBE-EXE ' + sys.executable)\n"
        "print('PROBE-UID %d' % os.getuid())\n"
        f"print('PROBE-DATA %s' % os.path.exists({str(data_dir)!r}))\n"
    )
    root = wsgi_project(tmp_path, "probe-svc", probe)
    with server.client() as api:
        done = api.build(root)
        text = api.build_log(done.id)
    found = (re.search(r"(PROBE-[A-Z]+) (.*)$", ln) for ln in text.splitlines())
    lines = {m.group(1): m.group(2) for m in found if m and "print(" not in m.group(0)}
    paths = json.loads(lines["PROBE-PATH"])
    env = json.loads(lines["PROBE-ENV"])
    venvs = {str(Path(sys.prefix)), str(Path(sys.prefix).resolve())}
    assert paths and not [p for p in paths if any(p.startswith(v) for v in venvs)]
    assert not [p for p in paths if p.endswith("site-packages") and "/sos/" not in p]
    assert SENTINEL not in env and "VIRTUAL_ENV" not in env and not env.get("PYTHONPATH")
    assert not [v for v in env.values() if any(venv in v for venv in venvs)]
    assert not any(lines["PROBE-EXE"].startswith(v) for v in venvs)
    if server.state.extra["builds"].builder.isolation == "bubblewrap":
        assert lines["PROBE-UID"] != "0" and lines["PROBE-DATA"] == "False"


def test_a_failing_build_says_why_with_its_log(server: RunningServer, tmp_path: Path) -> None:
    root = wsgi_project(tmp_path, "broken-svc", "import not_a_declared_package_xyz")
    with server.client() as api:
        with pytest.raises(BuildFailedError, match="failed") as caught:
            api.build(root)
        build = api.list_builds()[0]
        assert build.state == "failed" and build.artifact is None
        assert "not_a_declared_package_xyz" in (build.reason or "")
        assert "not_a_declared_package_xyz" in api.build_log(build.id)
        assert build.log_digest is not None
        assert "not_a_declared_package_xyz" in caught.value.message
        with pytest.raises(NotFoundError):
            api.get_artifact("broken-svc", "1.0.0")


def test_a_broken_project_fails_on_the_laptop_before_any_upload(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "no-entry"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    with server.client() as api:
        with pytest.raises(ProjectError):
            api.build(root)
        assert api.list_builds() == []


def test_queue_positions_cancel_and_timeout(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, tmp_path: Path
) -> None:
    running = build_server(sos_server, builder, concurrency=1, timeout=8)
    with running.client() as api:
        first = api.start_build(slow_project(tmp_path, "slow-one"))
        second = api.start_build(slow_project(tmp_path, "slow-two"))
        third = api.start_build(PROJECTS / "command-app")
        wait_state(api, first.id, "running")
        assert api.get_build(second.id).position == 1
        assert api.get_build(third.id).position == 2
        # a queued build leaves the queue; the one behind it moves up
        cancelled = api.cancel_build(second.id)
        assert cancelled.state == "cancelled" and cancelled.reason == "cancelled by admin"
        assert api.get_build(third.id).position == 1
        # the running one times out with the reason, then the next one runs
        timed_out = wait_state(api, first.id, "timed_out", within=60)
        assert "did not finish within 8 s" in (timed_out.reason or "")
        assert timed_out.artifact is None
        done = wait_state(api, third.id, "succeeded", "failed", within=120)
        assert done.state == "succeeded", done.reason
        # a running build is stopped by a cancel
        fourth = api.start_build(slow_project(tmp_path, "slow-four"))
        wait_state(api, fourth.id, "running")
        stopped = api.cancel_build(fourth.id)
        assert stopped.state == "cancelled" and stopped.finished_at is not None
        states = [e.get("state") for e in api.build_events(fourth.id, follow=True)]
        assert states[-1] == "cancelled"


def test_who_may_start_see_and_cancel_builds(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, tmp_path: Path
) -> None:
    running = build_server(sos_server, builder, concurrency=1, timeout=60, max_source=4096)
    reader = running.token("viewer", role="reader", team="recs")
    recs = running.token("recs-dev", role="writer", team="recs")
    ads = running.token("ads-dev", role="writer", team="ads")
    packed = pack_source(PROJECTS / "command-app")
    url = f"{running.url}/api/v1/builds"
    headers = {"X-SOS-Source-Digest": packed.digest}
    # no token: refused before the body is read; a reader: 403
    assert httpx.post(url, content=packed.data, headers=headers).status_code == 401
    with running.client(reader) as api, pytest.raises(PermissionDeniedError):
        api.start_build(PROJECTS / "command-app")
    # too large, and bytes that do not match their digest
    big = httpx.post(
        url,
        content=os.urandom(8192),
        headers={**headers, "Authorization": f"Bearer {recs}"},
    )
    assert big.status_code == 413
    wrong = httpx.post(
        url, content=packed.data + b"x", headers={**headers, "Authorization": f"Bearer {recs}"}
    )
    assert wrong.status_code == 422
    with running.client(recs) as api:
        mine = api.start_build(slow_project(tmp_path, "slow-recs"))
    with running.client(ads) as api:
        assert api.list_builds() == []
        with pytest.raises(NotFoundError):
            api.get_build(mine.id)
        with pytest.raises(NotFoundError):
            api.cancel_build(mine.id)
    with running.client(reader) as api:
        assert [b.id for b in api.list_builds()] == [mine.id]
        with pytest.raises(PermissionDeniedError):
            api.cancel_build(mine.id)
    with running.client() as api:
        assert api.cancel_build(mine.id).state == "cancelled"


def test_source_above_the_limit_is_refused_on_the_laptop(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "big"
    shutil.copytree(PROJECTS / "command-app", root)
    (root / "data.bin").write_bytes(os.urandom(64 * 1024))
    monkeypatch.setenv("SOS_MAX_SOURCE_BYTES", "16384")
    with server.client() as api:
        with pytest.raises(PayloadTooLargeError, match=r"data\.bin"):
            api.start_build(root)
        assert api.list_builds() == []


def test_local_path_dependencies_travel_with_the_project(
    server: RunningServer, tmp_path: Path
) -> None:
    mono = tmp_path / "mono"
    (mono / "shared" / "shared").mkdir(parents=True)
    (mono / "shared" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "shared"\nversion = "0.1.0"\n'
    )
    (mono / "shared" / "shared" / "__init__.py").write_text("WORD = 'shared'\n")
    (mono / "notes").mkdir()
    (mono / "notes" / "big.txt").write_text("not a dependency\n")
    app = wsgi_project(mono, "app", "import shared\nprint('PROBE-WORD ' + shared.WORD)")
    text = (app / "pyproject.toml").read_text()
    (app / "pyproject.toml").write_text(
        text.replace("dependencies = []", 'dependencies = ["shared @ file:../shared"]')
    )
    packed = pack_source(app, local=[mono / "shared"])
    assert packed.project == "app" and "notes/big.txt" not in packed.files
    assert {"app/pyproject.toml", "shared/shared/__init__.py"} <= set(packed.files)
    with server.client() as api:
        done = api.build(app)
        assert done.project == "app" and done.source_digest == packed.digest
        assert "PROBE-WORD shared" in api.build_log(done.id)


def test_builds_left_running_by_a_stopped_server_are_failed_at_its_start(
    builder: BuilderEnvironment, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    records = tmp_path / "builds" / "records"
    records.mkdir(parents=True)
    left = Build(
        id="20261204000000-00000001",
        state="running",
        source_digest="sha256:" + "1" * 64,
        source_size=1,
        created_by="admin",
        created_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    (records / f"{left.id}.json").write_text(left.model_dump_json())
    service = BuildService(tmp_path / "builds", builder=builder)
    (found,) = [b for b in service._builds.values()]
    assert found.state == "failed" and found.finished_at is not None
    assert "server stopped" in (found.reason or "")
    saved = Build.model_validate_json((records / f"{left.id}.json").read_text())
    assert saved.state == "failed"


COMMIT_IT = "commit it, so that every build installs these exact versions"


def test_the_lock_a_remote_build_resolved_is_written_beside_the_project(
    server: RunningServer, tmp_path: Path
) -> None:
    root = unpinned_project(tmp_path, "locked-svc")
    lock = root / "requirements.lock"
    with server.client() as api:
        done = api.build(root)
        text = lock.read_text()
        assert "# sos-lock: source=pyproject.toml inputs=sha256:" in text
        assert re.search(r"^six==1\.\d+\.\d+ \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.M)
        sha = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        assert done.lock == BuildLock(
            file="requirements.lock", sha256=sha, size=len(text), written=True, uploaded=None
        )
        said = f"resolved 1 unpinned dependency (six) into {{}}, 1 package in all; {COMMIT_IT}"
        assert done.warnings == [said.format(lock)]  # as a local build says it
        assert api.get_build(done.id).warnings == [said.format("requirements.lock")]
        assert api.build_lock(done.id) == text

        # the next build installs what it pins: nothing resolved, written or said
        again = api.build(root)
        assert again.steps[0].name == "Inspect the project"  # built: the source has the lock
        assert again.lock == done.lock.model_copy(update={"written": False, "uploaded": sha})
        assert again.warnings == [] and lock.read_text() == text
        log = api.build_log(again.id)
        assert "requirements.lock matches" in log and "--dry-run" not in log
        frozen = api.build(root, frozen=True)
        assert frozen.lock == again.lock and frozen.warnings == [] and lock.read_text() == text

        # without it, the source is the first build's again: reused, with its lock
        lock.unlink()
        reused = api.build(root)
        assert [(s.name, s.detail) for s in reused.steps] == [
            ("Reuse the build of the same source", done.id)
        ]
        assert reused.lock == done.lock and reused.warnings == done.warnings
        assert lock.read_text() == text

        # the declarations changed: the lock is stale, resolved again and replaced here
        pyproject = root / "pyproject.toml"
        text = pyproject.read_text().replace('["six"]', '["six", "packaging"]')
        pyproject.write_text(text.replace('"1.0.0"', '"1.1.0"'))
        updated = api.build(root)
        assert updated.lock is not None and updated.lock.written and updated.lock.uploaded == sha
        assert updated.warnings == [
            f"updated 2 unpinned dependencies (six, packaging) into {lock}, 2 packages in all; "
            + COMMIT_IT
        ]
        assert re.search(r"^packaging==\S+ \\$", lock.read_text(), re.M)
        assert api.build_lock(updated.id) == lock.read_text()


def test_a_lock_that_is_not_the_uploaded_one_is_kept(server: RunningServer, tmp_path: Path) -> None:
    root = unpinned_project(tmp_path, "kept-svc")
    (root / ".sosignore").write_text("requirements.lock\n")
    lock = root / "requirements.lock"
    lock.write_text("six==1.16.0\n")  # by hand, and not uploaded
    with server.client() as api:
        done = api.build(root)
        assert done.lock is not None and done.lock.written and done.lock.uploaded is None
        assert lock.read_text() == "six==1.16.0\n"
        assert done.warnings == [
            f"the server resolved its own requirements.lock, but {lock} is not the one "
            "uploaded (it changed since, or was left out of the source): it is kept as it "
            f"is; `sos builds {done.id} --lock` prints the server's"
        ]
        assert "six==1.16.0" not in api.build_lock(done.id)
        # a build without a lock file has none to give
        plain = api.build(wsgi_project(tmp_path, "plain-svc", ""))
        assert plain.lock is None and plain.warnings == []
        with pytest.raises(NotFoundError, match="has no lock file"):
            api.build_lock(plain.id)


def test_old_build_records_are_pruned(
    sos_server: Callable[..., RunningServer], builder: BuilderEnvironment, tmp_path: Path
) -> None:
    running = build_server(sos_server, builder, history=2)
    service = running.state.extra["builds"]

    def files(build_id: str) -> list[str]:
        return sorted(p.name for p in service.records.glob(f"{build_id}.*"))

    with running.client() as api:
        slow = api.start_build(slow_project(tmp_path, "slow-svc"))
        wait_state(api, slow.id, "running")
        roots = [wsgi_project(tmp_path, f"svc-{n}", f"N = {n}") for n in range(4)]
        built = [api.build(root) for root in roots]
        # the two last finished, and the running one (never dropped)
        assert [b.id for b in api.list_builds()] == [built[3].id, built[2].id, slow.id]
        for gone in built[:2]:
            assert files(gone.id) == []
            with pytest.raises(NotFoundError):
                api.get_build(gone.id)
        assert files(built[3].id) == [
            f"{built[3].id}.{x}" for x in ("events.ndjson", "json", "log")
        ]
        # a dropped build's source builds again (its reuse went with it); a kept one's is reused
        first = api.build(roots[0])
        assert first.steps[0].name == "Inspect the project"
        assert first.artifact == built[0].artifact
        last = api.build(roots[3])
        assert [s.detail for s in last.steps] == [built[3].id]
        assert api.cancel_build(slow.id).state == "cancelled"
        assert [b.id for b in api.list_builds()] == [last.id, slow.id]
        kept = {p.name.split(".")[0] for p in service.records.glob("2*")}
        assert kept == {last.id, slow.id}
        assert set(json.loads((service.records / "reuse.json").read_text()).values()) <= kept

    # at start too: a server keeping fewer keeps the one that finished last
    copy = tmp_path / "copy"
    shutil.copytree(service.root / "records", copy / "records")
    restarted = BuildService(copy, builder=builder, history=1)
    assert list(restarted._builds) == [slow.id]
    assert {p.name.split(".")[0] for p in (copy / "records").glob("2*")} == {slow.id}
    assert json.loads((copy / "records" / "reuse.json").read_text()) == {}


def test_the_build_history_setting_is_checked(
    builder: BuilderEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for wrong in ("0", "ten", "100001"):
        monkeypatch.setenv("SOS_BUILD_HISTORY", wrong)
        with pytest.raises(ValidationError) as caught:
            BuildService(tmp_path / "builds", builder=builder)
        assert caught.value.message == (
            f"SOS_BUILD_HISTORY={wrong!r} must be a number from 1 to 100000: the finished "
            "builds whose records are kept"
        )
    monkeypatch.setenv("SOS_BUILD_HISTORY", "7")
    assert BuildService(tmp_path / "builds", builder=builder).history == 7


def test_a_line_of_output_longer_than_a_read_does_not_cut_the_log_short(
    server: RunningServer, tmp_path: Path
) -> None:
    """An output line of megabytes (an event longer than one read of the log) is read whole,
    and what comes after it too: the log is not cut short there, and a follower goes on."""
    with server.client() as api:
        done = api.build(flooding_project(tmp_path, "flood", 3 << 20))
        log = api.build_log(done.id)
    assert done.state == "succeeded"
    assert longest_line(log) >= 3 << 20
    assert log.rstrip().splitlines()[-1].startswith("stored flood 1.0.0")  # its last line
