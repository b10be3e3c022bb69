"""The curated runtime images' entrypoint, run outside a container (no container engine
here): it downloads the artifact by digest from a real local HTTP server, verifies it,
and starts it exactly as ``sos.launch`` starts it; a wrong digest refuses to start.
The Dockerfiles are checked for what makes them safe and small."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from knative_pods import (
    ENTRYPOINT,
    PYTHON_APP,
    Started,
    build_python,
    digest_of,
    run_entrypoint,
)
from knative_samples import artifact, desired, revision

from sos.launch import launch_command, launch_env
from sos.runtime.knative import KnativeSettings, render_service

IMAGES = ENTRYPOINT.parent
LANGUAGES = ("python", "node", "go", "jvm")

# --------------------------------------------------------------------------- artifacts

NODE_APP = """
const http = require("http");
http.createServer((req, res) => {
  res.end(JSON.stringify({ argv: process.argv.slice(1), env: process.env }));
}).listen(Number(process.env.PORT), process.env.HOST);
"""

GO_APP = """
package main

import (
\t"encoding/json"
\t"net/http"
\t"os"
\t"strings"
)

func main() {
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
\t\tenv := map[string]string{}
\t\tfor _, kv := range os.Environ() {
\t\t\tparts := strings.SplitN(kv, "=", 2)
\t\t\tenv[parts[0]] = parts[1]
\t\t}
\t\tjson.NewEncoder(w).Encode(map[string]interface{}{"argv": os.Args, "env": env})
\t})
\thttp.ListenAndServe(os.Getenv("HOST")+":"+os.Getenv("PORT"), nil)
}
"""

JAVA_APP = """
import com.sun.net.httpserver.HttpServer;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class Main {
    static String quote(String s) {
        return "\\"" + s.replace("\\\\", "\\\\\\\\").replace("\\"", "\\\\\\"") + "\\"";
    }
    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(
            System.getenv("HOST"), Integer.parseInt(System.getenv("PORT"))), 0);
        server.createContext("/", exchange -> {
            StringBuilder json = new StringBuilder("{\\"argv\\": [");
            String sep = "";
            for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                json.append(sep).append(quote(arg));
                sep = ", ";
            }
            json.append("], \\"env\\": {");
            sep = "";
            for (var e : System.getenv().entrySet()) {
                json.append(sep).append(quote(e.getKey())).append(": ").append(quote(e.getValue()));
                sep = ", ";
            }
            byte[] body = json.append("}}").toString().getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
"""


def build_node(tmp: Path) -> bytes:
    return NODE_APP.encode()


def build_go(tmp: Path) -> bytes:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (scripts/setup installs golang-go)")
    (tmp / "main.go").write_text(GO_APP)
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GO111MODULE": "off",
        "GOCACHE": str(tmp / "gocache"),
        "GOPATH": str(tmp / "gopath"),
    }
    subprocess.run(
        ["go", "build", "-o", "app", "main.go"], cwd=tmp, env=env, check=True, timeout=240
    )
    return (tmp / "app").read_bytes()


def build_jvm(tmp: Path) -> bytes:
    if shutil.which("javac") is None or shutil.which("jar") is None:
        pytest.skip("a JDK (javac, jar) is not installed")
    (tmp / "Main.java").write_text(JAVA_APP)
    subprocess.run(["javac", "-d", "classes", "Main.java"], cwd=tmp, check=True, timeout=240)
    subprocess.run(
        ["jar", "--create", "--file", "app.jar", "--main-class", "Main", "-C", "classes", "."],
        cwd=tmp,
        check=True,
        timeout=120,
    )
    return (tmp / "app.jar").read_bytes()


BUILDERS = {"python": build_python, "node": build_node, "go": build_go, "jvm": build_jvm}


# --------------------------------------------------------------------------- the store


class ArtifactStore:
    """A real HTTP server on 127.0.0.1 that serves artifacts by digest, like SOS does."""

    def __init__(self, token: str | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.token = token
        self.requests: list[tuple[str, str | None]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                store.requests.append((self.path, auth))
                digest = self.path.rsplit("/", 1)[-1]
                if store.token and auth != f"Bearer {store.token}":
                    self.send_error(401)
                elif digest not in store.blobs:
                    self.send_error(404)
                else:
                    body = store.blobs[digest]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, digest: str) -> str:
        return f"{self.base}/api/v1/blobs/{digest}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store() -> Iterator[ArtifactStore]:
    served = ArtifactStore()
    yield served
    served.close()


@pytest.fixture
def entrypoint(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Started]]:
    yield from run_entrypoint(tmp_path)


def refused(started: Started) -> tuple[int, str]:
    _, err = started.process.communicate(timeout=60)
    return started.process.returncode, err


# --------------------------------------------------------------------------- entrypoint


def test_python_artifact_starts_like_sos_launch_from_a_rendered_manifest(
    tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    data = build_python(tmp_path)
    digest = digest_of(data)
    store.blobs[digest] = data
    rev = revision(
        3,
        digest=digest,
        env_vars=[{"id": "GREETING", "value": "hello $(USER) $$"}],
        resources={"memory": "256Mi"},
        gunicorn_config={"worker_count": 2, "thread_count": 3},
    )
    meta = artifact(digest=digest)
    manifest = render_service(
        desired([rev], artifacts=[meta]), KnativeSettings(artifact_url=store.base)
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    # what the kubelet hands the container: $$ becomes $, PORT comes from the port
    env = {e["name"]: e["value"].replace("$$", "$") for e in container["env"]}
    env["HOST"] = "127.0.0.1"  # tests listen on loopback only

    started = entrypoint(env)
    seen = started.answer()

    expected = launch_env(rev, port=started.port, host="127.0.0.1")
    assert {key: seen["env"].get(key) for key in expected} == expected
    assert seen["env"]["GREETING"] == "hello $(USER) $$"
    hex_ = digest.removeprefix("sha256:")
    assert seen["argv"] == [str(tmp_path / "sos-artifacts" / f"{hex_}.pyz")]
    assert [path for path, _ in store.requests] == [f"/api/v1/blobs/{digest}"]


@pytest.mark.parametrize(
    "language",
    [
        "node",
        pytest.param("go", marks=pytest.mark.slow),
        pytest.param("jvm", marks=pytest.mark.slow),
    ],
)
def test_each_language_downloads_verifies_and_answers_http(
    language: str, tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    if language == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    data = BUILDERS[language](tmp_path)
    digest = digest_of(data)
    store.blobs[digest] = data
    memory = str(300 * 2**20)
    started = entrypoint(
        {
            "SOS_ARTIFACT_DIGEST": digest,
            "SOS_ARTIFACT_URL": store.url(digest),
            "SOS_ARTIFACT_LANGUAGE": language,
            "SOS_REVISION": "recs-00001",
            "SOS_MEMORY_BYTES": memory,
        }
    )
    seen = started.answer(timeout=120)
    assert seen["env"]["PORT"] == str(started.port)
    assert seen["env"]["SOS_REVISION"] == "recs-00001"
    if language == "jvm":
        meta = artifact(digest=digest, language="jvm", runtime_version="17")
        heap = [
            a for a in launch_command(meta, Path("x.jar"), memory="300Mi") if a.startswith("-Xmx")
        ]
        assert heap and heap[0] in seen["argv"]  # the same heap as the local runtime gives


@pytest.mark.parametrize("downloader", ["curl", "wget", "python3", "node"])
def test_every_downloader_sends_the_token(downloader: str, tmp_path: Path, entrypoint: Any) -> None:
    if shutil.which(downloader) is None:
        pytest.skip(f"{downloader} is not installed here")
    secured = ArtifactStore(token="s3cret")
    try:
        data = build_python(tmp_path)
        digest = digest_of(data)
        secured.blobs[digest] = data
        started = entrypoint(
            {
                "SOS_ARTIFACT_DIGEST": digest,
                "SOS_ARTIFACT_URL": secured.url(digest),
                "SOS_ARTIFACT_LANGUAGE": "python",
                "SOS_ARTIFACT_TOKEN": "s3cret",
                "SOS_DOWNLOADER": downloader,
            }
        )
        assert "argv" in started.answer()
        assert secured.requests == [(f"/api/v1/blobs/{digest}", "Bearer s3cret")]
    finally:
        secured.close()


def test_wrong_digest_refuses_to_start(
    tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    data = build_python(tmp_path)
    claimed = digest_of(b"the bytes the revision was created with")
    store.blobs[claimed] = data  # the store serves other bytes under that digest
    started = entrypoint(
        {
            "SOS_ARTIFACT_DIGEST": claimed,
            "SOS_ARTIFACT_URL": store.url(claimed),
            "SOS_ARTIFACT_LANGUAGE": "python",
        }
    )
    code, err = refused(started)
    assert code == 65
    assert "artifact digest mismatch" in err and "Refusing to start" in err
    assert f"expected {claimed}" in err and f"downloaded {digest_of(data)}" in err
    assert list((tmp_path / "sos-artifacts").iterdir()) == []  # nothing left to run later


def test_mounted_artifact_starts_without_download_and_is_checked(
    tmp_path: Path, entrypoint: Any
) -> None:
    data = build_python(tmp_path)
    mounted = tmp_path / "volume" / "artifact.pyz"
    mounted.parent.mkdir()
    mounted.write_bytes(data)
    good = entrypoint(
        {
            "SOS_ARTIFACT_DIGEST": digest_of(data),
            "SOS_ARTIFACT_PATH": str(mounted),
            "SOS_ARTIFACT_LANGUAGE": "python",
        }
    )
    assert good.answer()["argv"] == [str(mounted)]
    bad = entrypoint(
        {
            "SOS_ARTIFACT_DIGEST": digest_of(b"other"),
            "SOS_ARTIFACT_PATH": str(mounted),
            "SOS_ARTIFACT_LANGUAGE": "python",
        }
    )
    code, err = refused(bad)
    assert code == 65 and "digest mismatch" in err


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"SOS_ARTIFACT_LANGUAGE": "python"}, 64, "SOS_ARTIFACT_DIGEST=''"),
        (
            {"SOS_ARTIFACT_LANGUAGE": "python", "SOS_ARTIFACT_DIGEST": "sha256:ABC"},
            64,
            "64 lowercase hex digits",
        ),
        ({"SOS_ARTIFACT_DIGEST": "sha256:" + "a" * 64}, 64, "SOS_ARTIFACT_LANGUAGE is not set"),
        (
            {"SOS_ARTIFACT_LANGUAGE": "ruby", "SOS_ARTIFACT_DIGEST": "sha256:" + "a" * 64},
            64,
            "unknown artifact language 'ruby'",
        ),
        (
            {
                "SOS_RUNTIME_LANGUAGE": "node",
                "SOS_ARTIFACT_LANGUAGE": "python",
                "SOS_ARTIFACT_DIGEST": "sha256:" + "a" * 64,
            },
            64,
            "use the runtime-python image",
        ),
        (
            {"SOS_ARTIFACT_LANGUAGE": "python", "SOS_ARTIFACT_DIGEST": "sha256:" + "a" * 64},
            64,
            "set SOS_ARTIFACT_URL",
        ),
        (
            {
                "SOS_ARTIFACT_LANGUAGE": "python",
                "SOS_ARTIFACT_DIGEST": "sha256:" + "a" * 64,
                "SOS_ARTIFACT_URL": "STORE/missing",
            },
            69,
            "could not download the artifact",
        ),
    ],
    ids=[
        "no-digest",
        "bad-digest",
        "no-language",
        "unknown-language",
        "wrong-image",
        "nowhere-to-get-it",
        "not-found",
    ],
)
def test_bad_configuration_fails_clearly(
    env: dict[str, str], code: int, message: str, store: ArtifactStore, entrypoint: Any
) -> None:
    env = {key: value.replace("STORE", store.base) for key, value in env.items()}
    got, err = refused(entrypoint(env))
    assert got == code
    assert message in err


def test_a_verified_download_is_reused_after_a_restart(
    tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    data = build_python(tmp_path)
    digest = digest_of(data)
    store.blobs[digest] = data
    env = {
        "SOS_ARTIFACT_DIGEST": digest,
        "SOS_ARTIFACT_URL": store.url(digest),
        "SOS_ARTIFACT_LANGUAGE": "python",
    }
    first = entrypoint(env)
    first.answer()
    first.stop()
    second = entrypoint(env)
    second.answer()
    assert len(store.requests) == 1


LAUNCHER = """
import os, runpy

def main():
    with open(os.environ["STEPS"], "a") as steps:
        steps.write("prepare\\n" if os.environ.get("SOS_PREPARE_ONLY") else "serve\\n")
    if os.environ.get("SOS_PREPARE_ONLY"):
        raise SystemExit(int(os.environ.get("PREPARE_EXIT", "0")))
    runpy.run_module("echo_app", run_name="__main__")
"""


def build_shiv_python(tmp: Path) -> bytes:
    """A shiv zipapp with the SOS launcher's entry point (as `sos build` makes), whose
    launcher notes each step in $STEPS and then serves the echo app."""
    site = tmp / "site"
    site.mkdir()
    (site / "_sos_launcher.py").write_text(LAUNCHER)
    (site / "echo_app.py").write_text(PYTHON_APP)
    shiv = Path(sys.executable).parent / "shiv"
    out = tmp / "app.pyz"
    argv = [str(shiv), "--site-packages", str(site), "-e", "_sos_launcher:main"]
    subprocess.run([*argv, "-o", str(out), "--reproducible"], check=True, timeout=120)
    return out.read_bytes()


def shiv_env(tmp_path: Path, store: ArtifactStore, **extra: str) -> dict[str, str]:
    """The environment of a pod running a shiv artifact served by ``store``."""
    data = build_shiv_python(tmp_path)
    digest = digest_of(data)
    store.blobs[digest] = data
    return {
        "SOS_ARTIFACT_DIGEST": digest,
        "SOS_ARTIFACT_URL": store.url(digest),
        "SOS_ARTIFACT_LANGUAGE": "python",
        "SHIV_ROOT": str(tmp_path / "shiv"),
        "STEPS": str(tmp_path / "steps"),
        **extra,
    }


def test_python_shiv_artifact_is_prepared_before_it_starts(
    tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    seen = entrypoint(shiv_env(tmp_path, store)).answer()
    assert (tmp_path / "steps").read_text().split() == ["prepare", "serve"]
    root = tmp_path / "shiv"
    assert list(root.glob("*/site-packages/echo_app.py"))  # unpacked where it serves from
    assert seen["env"]["SHIV_ROOT"] == str(root)
    assert "SOS_PREPARE_ONLY" not in seen["env"]


def test_python_artifact_that_cannot_be_prepared_does_not_start(
    tmp_path: Path, store: ArtifactStore, entrypoint: Any
) -> None:
    code, err = refused(entrypoint(shiv_env(tmp_path, store, PREPARE_EXIT="3")))
    assert code == 70
    assert "preparing the artifact failed (SOS_PREPARE_ONLY=1" in err
    assert (tmp_path / "steps").read_text().split() == ["prepare"]


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("language", LANGUAGES)
def test_dockerfile_is_small_non_root_and_uses_the_shared_entrypoint(language: str) -> None:
    text = (IMAGES / language / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert re.search(r"slim|alpine", base), f"{language}: {base} is not a slim or Alpine base"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and not users[-1].startswith("0")
    assert "COPY --chmod=0755 entrypoint.sh /usr/local/bin/sos-entrypoint" in text
    assert re.search(r'^ENTRYPOINT \[".*tini", "--", "/usr/local/bin/sos-entrypoint"\]', text, re.M)
    assert f"SOS_RUNTIME_LANGUAGE={language}" in text
    assert "PORT=8080" in text


def test_every_rendered_image_has_a_dockerfile() -> None:
    for language in LANGUAGES:
        meta = artifact(language=language, runtime_version="3.11" if language == "python" else "20")
        image = render_service(desired([revision(1)], artifacts=[meta]), KnativeSettings())
        name = image["spec"]["template"]["spec"]["containers"][0]["image"]
        assert (IMAGES / name.rsplit("/", 1)[1].split(":")[0].removeprefix("runtime-")).is_dir()


def test_entrypoint_is_posix_sh() -> None:
    shells = [shell for shell in ("dash", "busybox", "bash") if shutil.which(shell)]
    for shell in shells:
        argv = [shell, "sh", "-n"] if shell == "busybox" else [shell, "-n"]
        if shell == "bash":
            argv = ["bash", "--posix", "-n"]
        subprocess.run([*argv, str(ENTRYPOINT)], check=True)
    assert shells
