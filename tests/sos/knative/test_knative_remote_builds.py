"""Remote builds on a server on Knative, end to end: a real SOS server whose builds run as
Kubernetes Jobs through the stand-in API server, each Job's container a real process
(``knative_kubelet.JobKubelet``: the one part a cluster would run) that downloads the source
and SOS's build code from the server with the build's own key, builds, and uploads the
artifact, which the server stores with its provenance."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from knative_kubelet import JobKubelet
from knative_pods import free_port
from knative_server_process import ADMIN_TOKEN, start_sos_server, stop_sos_server
from knative_standin import NAMESPACE, KnativeStandIn
from sos_builds import (
    PROJECTS,
    SENTINEL,
    flooding_project,
    longest_line,
    slow_project,
    unpinned_project,
    wait_state,
    wsgi_project,
)

from sos.build import runner as runner_module
from sos.build.errors import BuildFailedError
from sos.build.source import pack_source
from sos.errors import ValidationError
from sos.models import Build, Token
from sos.runtime.knative import KnativeBackend, KnativeSettings, build_job
from sos.runtime.knative.builds import KnativeBuildRunner
from sos.server.builds import configure

if TYPE_CHECKING:
    from sos_server import RunningServer

#: the runtime image's Python: a clean interpreter (the server's base one), no virtualenv
IMAGE_PYTHON = getattr(sys, "_base_executable", sys.executable)
IMAGE = f"localhost:5000/sos/runtime-python:{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
async def kubelet(standin: KnativeStandIn, tmp_path: Path) -> AsyncIterator[JobKubelet]:
    running = JobKubelet(standin, IMAGE_PYTHON, tmp_path / "pods")
    yield running
    await running.close()


@pytest.fixture
async def knative_server(
    sos_server: Callable[..., RunningServer], kubeconfig: Path, kubelet: JobKubelet
) -> RunningServer:
    backend = KnativeBackend(KnativeSettings(kubeconfig=str(kubeconfig)), poll_interval=0.01)
    server = await asyncio.to_thread(sos_server, backend=backend)
    configure(server.state)  # as `sos server` does at start (tests start servers bare)
    # the server's address as pods reach it: known once it listens
    backend.settings = backend.settings.model_copy(update={"build_url": server.url})
    runner(server).poll = 0.05
    return server


def runner(server: RunningServer) -> KnativeBuildRunner:
    builder = server.state.extra["builds"].builder  # type: ignore[attr-defined]
    assert isinstance(builder, KnativeBuildRunner)
    return builder


def failed_build(server: RunningServer, project: Path = PROJECTS / "command-app") -> str:
    """Why a build of ``project`` failed."""
    with server.client() as api:
        with pytest.raises(BuildFailedError) as caught:
            api.build(project)
        return caught.value.message


def job_of(standin: KnativeStandIn, build: Build) -> dict[str, object] | None:
    return next((j for (_, n), j in standin.jobs.items() if build.id.lower() in n), None)


async def test_a_remote_build_runs_as_a_job_and_stores_its_artifact(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    packed = pack_source(PROJECTS / "command-app")

    def build() -> tuple[Build, str, bytes]:
        with knative_server.client() as api:
            done = api.build(PROJECTS / "command-app")
            assert done.artifact is not None
            data = api.download_artifact(done.artifact.digest, tmp_path / "a.pyz").read_bytes()
            return done, api.build_log(done.id), data

    done, log, data = await asyncio.to_thread(build)
    assert done.state == "succeeded" and done.builder == "knative-job"
    assert [s.state for s in done.steps] == ["done"] * len(done.steps) and len(done.steps) >= 3
    meta = done.artifact
    assert meta is not None and (meta.name, meta.version) == ("tick-server", "2.0.0")
    assert len(data) == meta.size
    provenance = meta.extra["provenance"]
    assert provenance["source_digest"] == packed.digest
    assert provenance["builder"]["where"] == "knative-job"
    assert IMAGE in provenance["builder"]["interpreter"]
    # the Job: the runtime image, the build's Secret as SOS_TOKEN; the Secret is gone after
    job = job_of(standin, done)
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["image"] == IMAGE
    assert not [key for key in standin.secrets if key[1].startswith("sos-build-")]
    # its pod's log is the build's log: the Job's own lines and the build tools'
    assert f"Job {NAMESPACE}/sos-build-" in log and "== the build tools' log" in log
    # the same source again: reused, no second Job
    jobs = len(standin.jobs)

    def again() -> Build:
        with knative_server.client() as api:
            return api.build(PROJECTS / "command-app")

    second = await asyncio.to_thread(again)
    assert second.artifact == meta and len(standin.jobs) == jobs


async def test_a_job_resolves_version_ranges_and_the_lock_comes_back(
    knative_server: RunningServer, tmp_path: Path
) -> None:
    root = unpinned_project(tmp_path, "ranged-on-knative")

    def build() -> Build:
        with knative_server.client() as api:
            return api.build(root)

    done = await asyncio.to_thread(build)
    assert done.builder == "knative-job" and done.lock is not None and done.lock.written
    assert "six==" in (root / "requirements.lock").read_text()


async def test_only_the_builds_key_opens_its_routes_and_only_while_it_runs(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    url = knative_server.url

    def start() -> Build:
        with knative_server.client() as api:
            started = api.start_build(slow_project(tmp_path, "slow-key"))
            return wait_state(api, started.id, "running")

    build = await asyncio.to_thread(start)
    for _ in range(200):
        secret = next(
            (s for (_, n), s in standin.secrets.items() if n.startswith("sos-build")), None
        )
        if secret is not None:
            break
        await asyncio.sleep(0.05)
    assert secret is not None
    key = base64.b64decode(secret["data"]["token"]).decode()
    source = f"{url}/api/v1/builds/{build.id}/source"
    async with httpx.AsyncClient() as http:
        opened = await http.get(source, headers={"Authorization": f"Bearer {key}"})
        assert opened.status_code == 200 and opened.content[:2] == b"\x1f\x8b"
        # the admin token is not this build's key; nor is a guess
        for other in (f"Bearer {knative_server.admin_token}", f"Bearer {key[:-1]}x", "Basic x"):
            refused = await http.get(source, headers={"Authorization": other})
            assert refused.status_code == 401, other
        assert (await http.get(source)).status_code == 401
        with_key = {"Authorization": f"Bearer {key}"}
        hidden = f"{url}/api/v1/builds/{build.id}/artifact/.profile"
        refused = await http.put(hidden, content=b"x", headers=with_key)
        assert refused.status_code == 422 and "not a file name" in refused.text
        # the key opens this build's upload, nothing else with a body
        for method, path in (("PUT", "/artifacts/x/1"), ("POST", "/services")):
            other = await http.request(
                method, url + "/api/v1" + path, content=b"{}", headers=with_key
            )
            assert other.status_code == 401, path

        def cancel() -> Build:
            with knative_server.client() as api:
                return api.cancel_build(build.id)

        cancelled = await asyncio.to_thread(cancel)
        assert cancelled.state == "cancelled"
        # the Job (and its pod) are deleted, the Secret too, and the key opens nothing
        for _ in range(200):
            if job_of(standin, build) is None and not standin.secrets:
                break
            await asyncio.sleep(0.05)
        assert job_of(standin, build) is None and not standin.secrets
        late = await http.get(source, headers={"Authorization": f"Bearer {key}"})
        assert late.status_code == 401


async def test_a_pod_that_cannot_start_fails_the_build_with_kubernetes_reason(
    knative_server: RunningServer, standin: KnativeStandIn
) -> None:
    standin.failing_images.add(IMAGE)
    message = await asyncio.to_thread(failed_build, knative_server)
    assert "the build's pod cannot start: ImagePullBackOff" in message
    assert f"push {IMAGE} (runtime-images/README.md)" in message  # what to do
    assert not standin.jobs  # deleted, not left to its deadline


async def test_a_failing_build_and_a_timeout_are_said_as_such(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    root = tmp_path / "broken"
    (root / "svc").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "broken"\nversion = "1"\ndependencies = []\n\n'
        '[tool.sos]\napp = "svc.web:app"\n'
    )
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "web.py").write_text("import not_a_declared_package_xyz\napp = None\n")
    service = knative_server.state.extra["builds"]

    def builds() -> tuple[Build, Build]:
        with knative_server.client() as api:
            with pytest.raises(BuildFailedError):
                api.build(root)
            failed = api.list_builds()[0]
            service.timeout = 3  # type: ignore[attr-defined]
            slow = api.start_build(slow_project(tmp_path, "slow-deadline"))
            return failed, wait_state(api, slow.id, "timed_out", "failed", within=60)

    failed, late = await asyncio.to_thread(builds)
    assert failed.state == "failed" and "not_a_declared_package_xyz" in (failed.reason or "")
    assert late.state == "timed_out" and "did not finish within 3 s" in (late.reason or "")
    for _ in range(100):
        if job_of(standin, late) is None:
            break
        await asyncio.sleep(0.05)
    assert job_of(standin, late) is None


async def test_what_a_job_cannot_build_is_refused_before_the_upload(
    knative_server: RunningServer, tmp_path: Path
) -> None:
    def start(project: Path) -> str:
        with knative_server.client() as api:
            with pytest.raises(ValidationError) as caught:
                api.start_build(project)
            assert api.list_builds() == []
            return caught.value.message

    message = await asyncio.to_thread(start, PROJECTS / "node-hello")
    assert "remote builds on Knative build Python projects" in message
    assert "sos push" in message
    backend = runner(knative_server).backend
    backend.settings = backend.settings.model_copy(update={"build_url": None})
    message = await asyncio.to_thread(start, PROJECTS / "command-app")
    assert "SOS_KNATIVE_BUILD_URL" in message


async def test_sos_build_remote_through_sos_server_on_knative(
    kubeconfig: Path, standin: KnativeStandIn, kubelet: JobKubelet, tmp_path: Path
) -> None:
    """As a user runs it: `sos server --backend knative` (its build URL an option), and
    `sos build --remote` from a project directory."""
    port = free_port()
    process, url = await start_sos_server(
        kubeconfig, tmp_path / "data", "--backend-opt", f"build_url=http://127.0.0.1:{port}",
        port=port,
    )  # fmt: skip
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOS_")}
        env.update(SOS_URL=url, SOS_TOKEN=ADMIN_TOKEN, SOS_HOME=str(tmp_path / "home"))
        built = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from sos.cli import main; main()",
            "build", "--remote", str(PROJECTS / "command-app"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        async with asyncio.timeout(180):
            output = (await built.communicate())[0].decode()
        assert built.returncode == 0, output
        assert "built on the server" in output and "knative-job" in output, output
        assert [key for key in standin.jobs if key[1].startswith("sos-build-")], standin.jobs
    finally:
        await stop_sos_server(process)


async def running_slow_build(
    server: RunningServer, standin: KnativeStandIn, tmp_path: Path, name: str
) -> tuple[Build, str]:
    """A build whose pod is busy (its app check sleeps), and its Job's name."""

    def start() -> Build:
        with server.client() as api:
            return api.start_build(slow_project(tmp_path, name))

    build = await asyncio.to_thread(start)
    for _ in range(600):
        job = job_of(standin, build)
        logs = [lines for pod, lines in standin.pod_logs.items() if build.id.lower() in pod]
        if job is not None and logs and any("Check the app" in line for line in logs[0]):
            return build, str(job["metadata"]["name"])  # type: ignore[index]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the pod of build {build.id} did not get to its app check")


async def gone(standin: KnativeStandIn, build: Build, within: float = 10) -> bool:
    """The build's Job and Secret are deleted (within ``within`` s)."""
    for _ in range(int(within / 0.05)):
        if job_of(standin, build) is None and not standin.secrets:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_api_errors_during_a_build_are_waited_out_and_past_that_the_job_is_deleted(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    """A blip of the API server (an answer of 500 now and then) is not a failed build;
    an API server that keeps failing fails it after ``api_grace``, and the Job that was
    left running is deleted with its Secret."""
    runner(knative_server).api_grace = 60

    async def blips() -> None:
        for _ in range(6000):
            if standin.pods:
                break
            await asyncio.sleep(0.01)
        name = next(iter(standin.jobs))[1]
        leader = "etcdserver: leader changed"
        standin.fail("list", "PodList", 500, "InternalError", leader, times=3)
        standin.fail("get", name, 503, "ServiceUnavailable", "the server is restarting", times=2)

    def build() -> tuple[Build, str]:
        with knative_server.client() as api:
            done = api.build(PROJECTS / "command-app")
            return done, api.build_log(done.id)

    blipping = asyncio.create_task(blips())
    done, log = await asyncio.to_thread(build)
    await blipping
    assert done.state == "succeeded" and done.artifact is not None
    assert "trying again for 60 s" in log and "the Kubernetes API answers again" in log
    assert "packed 0 distributions" in log  # the pod's log is all there
    # an API server that keeps failing: the build fails, its Job is not left running
    runner(knative_server).api_grace = 1
    build_, name = await running_slow_build(knative_server, standin, tmp_path, "slow-api")
    standin.fail("get", name, 500, "InternalError", "etcdserver: request timed out", times=0)

    def failed() -> Build:
        with knative_server.client() as api:
            return wait_state(api, build_.id, "failed", "succeeded", within=30)

    late = await asyncio.to_thread(failed)
    standin.heal()
    assert late.state == "failed", late
    assert f"lost touch with the build's Job {NAMESPACE}/{name}" in (late.reason or "")
    assert "etcdserver: request timed out" in (late.reason or "")
    assert await gone(standin, late)


async def test_a_stop_is_not_kept_waiting_by_an_api_server_that_does_not_answer(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    """Cancel works at once while the API server hangs; the Job that could not be deleted
    is said in the build's log, with the command that deletes it."""
    runner(knative_server).request_timeout = 1
    build, name = await running_slow_build(knative_server, standin, tmp_path, "slow-hang")
    standin.stall("get", name)
    standin.stall("delete", name)
    await asyncio.sleep(0.5)  # its watch is waiting for an answer

    def cancel() -> tuple[Build, str]:
        with knative_server.client() as api:
            api.cancel_build(build.id)
            return wait_state(api, build.id, "cancelled", within=5), api.build_log(build.id)

    cancelled, log = await asyncio.to_thread(cancel)
    assert cancelled.state == "cancelled"
    assert f"or delete it: kubectl delete job -n {NAMESPACE} {name}" in log
    assert not knative_server.state.extra["builds"]._running  # type: ignore[attr-defined]
    standin.unstall()
    assert not standin.secrets  # the Secret went all the same


async def test_a_job_kubernetes_refuses_fails_the_build_and_leaves_no_secret(
    knative_server: RunningServer, standin: KnativeStandIn
) -> None:
    standin.fail(
        "apply", "sos-build-*", 403, "Forbidden",
        'jobs.batch is forbidden: User "system:serviceaccount:sos:sos" cannot patch '
        'resource "jobs" in API group "batch"',
    )  # fmt: skip
    message = await asyncio.to_thread(failed_build, knative_server)
    assert 'cannot patch resource "jobs"' in message
    assert not standin.jobs and not standin.secrets


async def test_the_secret_is_owned_by_the_job_and_a_server_that_stops_deletes_both(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    build, _ = await running_slow_build(knative_server, standin, tmp_path, "slow-stop")
    job = job_of(standin, build)
    assert job is not None
    # were the server to die instead, Kubernetes would delete the Secret with the Job
    for _ in range(100):
        secret = next(s for (_, n), s in standin.secrets.items() if n.startswith("sos-build-"))
        if secret["metadata"].get("ownerReferences"):
            break
        await asyncio.sleep(0.05)
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Job", job["metadata"]["name"])  # type: ignore[index]
    assert owner["uid"] == job["metadata"]["uid"]  # type: ignore[index]
    await asyncio.to_thread(knative_server.stop)
    assert await gone(standin, build)
    admin = Token(id="t", name="admin", role="admin", created_at=datetime.now(UTC))
    stopped = knative_server.state.extra["builds"].get(build.id, admin)  # type: ignore[attr-defined]
    assert stopped.state == "failed" and "the server stopped" in (stopped.reason or "")


async def test_a_job_that_cannot_hand_its_artifact_over_fails_the_build_with_the_cause(
    knative_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server address pods cannot reach, a Job that uploaded nothing, a Job that ended
    without saying what it built: each fails the build with what happened, not with an
    exit code or a file name of the server."""
    backend = runner(knative_server).backend
    good = backend.settings
    backend.settings = good.model_copy(update={"build_url": f"http://127.0.0.1:{free_port()}"})
    message = await asyncio.to_thread(failed_build, knative_server)
    assert f"cannot reach the SOS server at {backend.settings.build_url} to send the " in message
    assert "SOS_KNATIVE_BUILD_URL must be its address as pods reach it" in message
    backend.settings = good
    upload = 'for name in os.listdir(f"{work}/out") if code == 0 else []:'
    assert upload in build_job.BOOTSTRAP
    monkeypatch.setattr(build_job, "BOOTSTRAP", build_job.BOOTSTRAP.replace(upload, "for _ in []:"))
    message = await asyncio.to_thread(failed_build, knative_server)
    assert "the build made 'tick-server-2.0.0.pyz' but it never reached the server" in message
    assert "builds/work" not in message
    monkeypatch.setattr(build_job, "BOOTSTRAP", "print('starting')")
    message = await asyncio.to_thread(failed_build, knative_server)
    assert "the builder ended without saying what it built" in message


async def test_a_pod_no_node_takes_is_said_in_the_log_until_the_timeout(
    knative_server: RunningServer, standin: KnativeStandIn, kubelet: JobKubelet, tmp_path: Path
) -> None:
    """A cluster without room for the build (the autoscaler may add a node, so it waits)
    says why in the build's log, not only 'did not finish' at the end."""
    kubelet.unschedulable = "0/3 nodes are available: 3 Insufficient cpu."
    knative_server.state.extra["builds"].timeout = 2  # type: ignore[attr-defined]

    def build() -> tuple[Build, str]:
        with knative_server.client() as api:
            started = api.start_build(PROJECTS / "command-app")
            done = wait_state(api, started.id, "timed_out", "failed", "succeeded", within=30)
            return done, api.build_log(started.id)

    done, log = await asyncio.to_thread(build)
    assert done.state == "timed_out", done
    assert "pod waiting: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu." in log
    assert await gone(standin, done)


async def test_the_job_sees_the_pip_settings_of_the_server_as_a_local_build_does(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    """pip's settings and proxies of the server's environment reach the build (from the
    build's Secret: an index URL may hold a password), nothing else of it does."""
    service = knative_server.state.extra["builds"]
    service.environ = {  # type: ignore[attr-defined]
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},  # the test's wheels
        SENTINEL: "secret",
        "PIP_DEFAULT_TIMEOUT": "179",
        "no_proxy": "pypi.example.internal",
        "PIP_CACHE_DIR": "/var/cache/server-pip",
        "PIP_CERT": "/etc/server-only/ca.pem",  # a file of the server: not in the pod
    }
    probe = "import json, os\nprint('PROBE-ENV ' + json.dumps(dict(os.environ)))\n"

    def build() -> tuple[Build, str]:
        with knative_server.client() as api:
            done = api.build(wsgi_project(tmp_path, "env-probe", probe))
            return done, api.build_log(done.id)

    done, log = await asyncio.to_thread(build)
    line = next(ln for ln in log.splitlines() if "PROBE-ENV {" in ln)
    env = json.loads(line[line.index("{") :])
    assert env["PIP_DEFAULT_TIMEOUT"] == "179" and env["no_proxy"] == "pypi.example.internal"
    assert env["PIP_CACHE_DIR"] != "/var/cache/server-pip" and SENTINEL not in env
    assert "PIP_CERT" not in env
    job = job_of(standin, done)
    assert job is not None
    (container,) = job["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    server_env = set(service.environ) - {"PIP_CACHE_DIR", "PIP_CERT"}  # type: ignore[attr-defined]
    passed = {e["name"]: e for e in container["env"] if e["name"] in server_env}
    assert "PIP_DEFAULT_TIMEOUT" in passed and SENTINEL not in passed
    assert all("valueFrom" in e for e in passed.values())  # from the Secret, not in the Job


async def test_a_pod_killed_past_its_memory_limit_is_said_as_such(
    knative_server: RunningServer, standin: KnativeStandIn, kubelet: JobKubelet, tmp_path: Path
) -> None:
    build, name = await running_slow_build(knative_server, standin, tmp_path, "slow-oom")
    kubelet.kill(NAMESPACE, name, "OOMKilled")

    def failed() -> Build:
        with knative_server.client() as api:
            return wait_state(api, build.id, "failed", "succeeded", within=30)

    done = await asyncio.to_thread(failed)
    assert done.state == "failed"
    assert "used more memory than its limit (2Gi) and was killed (OOMKilled)" in (done.reason or "")


async def test_a_job_made_by_an_apply_a_cancel_overtook_is_deleted_once_it_lands(
    knative_server: RunningServer, standin: KnativeStandIn, tmp_path: Path
) -> None:
    standin.stall("apply", "sos-build-*")  # the API server is slow to answer the apply

    def start() -> Build:
        with knative_server.client() as api:
            return wait_state(
                api, api.start_build(slow_project(tmp_path, "slow-apply")).id, "running"
            )

    build = await asyncio.to_thread(start)
    for _ in range(200):
        if standin.secrets:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the apply is on its way

    def cancel() -> Build:
        with knative_server.client() as api:
            return api.cancel_build(build.id)

    cancelling = asyncio.create_task(asyncio.to_thread(cancel))
    await asyncio.sleep(0.5)
    standin.unstall()  # the Job is made after the cancel
    assert (await cancelling).state == "cancelled"
    await asyncio.sleep(1)  # the apply has landed by now
    assert await gone(standin, build)
    assert not standin.pods


async def test_output_without_newlines_cannot_fill_the_servers_memory(
    knative_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that writes megabytes with no newline to its pod's log has them cut at the
    longest line the server keeps, not held whole (nor gigabytes of them)."""
    monkeypatch.setattr(runner_module, "MAX_LINE", 1 << 20)

    def build() -> str:
        with knative_server.client() as api:
            started = api.start_build(flooding_project(tmp_path, "flood", 3 << 20, direct=True))
            wait_state(api, started.id, "succeeded", "failed", within=60)
            return api.build_log(started.id)

    log = await asyncio.to_thread(build)
    assert f"[cut: a line longer than {1 << 20} bytes]" in log
    assert longest_line(log) < (1 << 20) + 1000
