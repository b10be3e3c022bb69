"""Every ArtifactStore implementation passes the same contract tests: in memory, on local
disk, and in an S3-compatible object store (moto's S3 server on 127.0.0.1, run by an
interpreter that has moto: the project venv cannot, as botocore and the kubernetes client
pin incompatible python-dateutil versions)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sos.artifacts import ArtifactStore, LocalArtifactStore, MemoryArtifactStore

MOTO = (
    "from moto.server import ThreadedMotoServer; import sys, time\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
    "print(s.get_host_and_port()[1], flush=True)\n"
    "sys.stdin.read(); s.stop()\n"
)


def _moto_python() -> str | None:
    candidates = [
        os.environ.get("SOS_TEST_MOTO_PYTHON"),
        shutil.which("python3"),
        "/usr/bin/python3",
    ]
    for python in filter(None, candidates):
        if Path(python).resolve() == Path(sys.executable).resolve():
            continue
        probe = subprocess.run(
            [python, "-c", "import moto.server"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return python
    return None


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    python = _moto_python()
    if python is None:
        pytest.skip("no interpreter with moto[server] found (set SOS_TEST_MOTO_PYTHON)")
    try:
        import minio  # noqa: F401
    except ImportError:
        pytest.skip("the MinIO client is not installed (pip install 'flight-sos[s3]')")
    proc = subprocess.Popen(
        [python, "-c", MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(params=["memory", "local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "memory":
        yield MemoryArtifactStore()
    elif request.param == "local":
        yield LocalArtifactStore(tmp_path / "artifacts")
    else:
        from sos.artifacts.s3 import S3ArtifactStore

        endpoint = request.getfixturevalue("moto_endpoint")
        yield S3ArtifactStore(
            f"sos-{uuid.uuid4().hex[:12]}",
            prefix="artifacts",
            endpoint_url=endpoint,
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            staging_dir=tmp_path / "staging",
        )
