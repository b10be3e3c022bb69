"""Running the runtime images' entrypoint the way a pod would, outside a container:
an artifact that echoes its argv and environment over HTTP, and a harness that starts
``runtime-images/entrypoint.sh`` and waits for the artifact's first answer."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENTRYPOINT = ROOT / "runtime-images" / "entrypoint.sh"

PYTHON_APP = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv, "env": dict(os.environ)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Echo).serve_forever()
"""


def build_python(tmp: Path) -> bytes:
    path = tmp / "app.pyz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__main__.py", PYTHON_APP)
    return path.read_bytes()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Started:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process, self.port = process, port

    def answer(self, timeout: float = 60) -> dict[str, Any]:
        """The artifact's first HTTP answer (it echoes its argv and environment)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                pytest.fail(f"the entrypoint exited {self.process.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as r:
                    return json.loads(r.read())  # type: ignore[no-any-return]
            except OSError:
                time.sleep(0.1)
        pytest.fail("the artifact did not answer HTTP in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_entrypoint(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Started]]:
    """``run(env)`` starts the entrypoint with ``env`` (plus PATH, HOME, TMPDIR, HOST=127.0.0.1
    and a free PORT); everything started is stopped at the end."""
    started: list[Started] = []

    def run(env: dict[str, str]) -> Started:
        port = free_port()
        full = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "SOS_DOWNLOAD_ATTEMPTS": "1",
            **env,
        }
        process = subprocess.Popen(
            ["sh", str(ENTRYPOINT)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(Started(process, port))
        return started[-1]

    yield run
    for each in started:
        each.stop()
