"""The remote build driver (``sos.build._remote_worker``) reports the lock file a build
wrote, for the server to send back to the laptop: here a Node project's
``package-lock.json`` (a Python project's ``requirements.lock`` goes the whole way over
HTTP in tests/sos/server/test_builds_http.py; remote Node builds need the builder to reach
npm's registry, which a sandbox here may not)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sos.build._remote_worker import main
from sos.build.cache import BuildCache


@pytest.mark.skipif(
    not (shutil.which("node") and shutil.which("npm")), reason="node/npm not installed"
)
def test_the_driver_reports_the_package_lock_it_wrote(
    tmp_path: Path,
    build_cache: BuildCache,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOS_CACHE_DIR", str(build_cache.root))
    monkeypatch.setenv("SOS_HOME", str(tmp_path / "home"))
    root = tmp_path / "src"
    root.mkdir()
    (root / "package.json").write_text(
        json.dumps(
            {
                "name": "padded",
                "version": "1.0.0",
                "main": "index.js",
                "dependencies": {"left-pad": "^1.2.0"},
            }
        )
    )
    (root / "index.js").write_text(
        "const pad = require('left-pad');\n"
        "require('http').createServer((q, r) => r.end(pad('x', 3, '-')))"
        ".listen(process.env.PORT, process.env.HOST);\n"
    )
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"source": str(root), "out": str(tmp_path / "out")}))

    def result() -> dict[str, Any]:
        assert main([str(request)]) == 0
        lines = capsys.readouterr().out.splitlines()
        event = json.loads(lines[-1])
        assert event["event"] == "result", lines[-1]
        found: dict[str, Any] = event["result"]
        return found

    first = result()
    text = (root / "package-lock.json").read_text()
    sha = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert first["lock"] == {
        "file": "package-lock.json",
        "sha256": sha,
        "size": len(text.encode()),
        "written": True,
        "uploaded": None,
        "text": text,
    }
    assert first["warnings"] == [
        "resolved package.json's dependencies (left-pad) into package-lock.json, 1 package "
        "in all; commit it, so that every build installs these exact versions"
    ]
    again = result()  # the lock is in the source now: used as it is
    assert again["lock"] == {**first["lock"], "written": False, "uploaded": sha}
    assert again["warnings"] == []
