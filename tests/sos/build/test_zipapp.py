"""Zipapps written from a cached, already compressed dependency zip plus fresh code."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from sos.build._zipapp import build_deps_zip, write_zipapp


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_copied_entries_are_intact_and_code_wins_over_dependencies(tmp_path: Path) -> None:
    deps = tree(
        tmp_path / "deps",
        {"dep/__init__.py": "VALUE = 'dep'\n" * 200, "shared.py": "WHO = 'dependency'\n"},
    )
    code = tree(
        tmp_path / "code",
        {"shared.py": "WHO = 'project'\n", "app.py": "import dep, shared\n"
         "def main():\n    print(dep.VALUE[:5], shared.WHO)\n"},
    )  # fmt: skip
    build_deps_zip(deps, tmp_path / "deps.zip")
    target = tmp_path / "app.pyz"
    write_zipapp(target, deps_zip=tmp_path / "deps.zip", code=[code], entry_point="app:main")
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None  # every CRC matches: no entry was damaged
        names = archive.namelist()
        assert names.count("site-packages/shared.py") == 1
        assert archive.read("site-packages/dep/__init__.py").startswith(b"VALUE = 'dep'")
        env = json.loads(archive.read("environment.json"))
    assert env["entry_point"] == "app:main" and env["build_id"]
    done = subprocess.run(
        [sys.executable, str(target)],
        env={"SHIV_ROOT": str(tmp_path / "shiv"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "dep project", done.stderr


def test_same_inputs_give_the_same_bytes_and_new_code_a_new_build_id(tmp_path: Path) -> None:
    deps = tree(tmp_path / "deps", {"dep.py": "X = 1\n"})
    build_deps_zip(deps, tmp_path / "deps.zip")
    code = tree(tmp_path / "code", {"app.py": "def main():\n    pass\n"})
    one, two = tmp_path / "one.pyz", tmp_path / "two.pyz"
    write_zipapp(one, deps_zip=tmp_path / "deps.zip", code=[code], entry_point="app:main")
    write_zipapp(two, deps_zip=tmp_path / "deps.zip", code=[code], entry_point="app:main")
    assert one.read_bytes() == two.read_bytes()
    (code / "app.py").write_text("def main():\n    return 1\n")
    three = tmp_path / "three.pyz"
    write_zipapp(three, deps_zip=tmp_path / "deps.zip", code=[code], entry_point="app:main")

    def build_id(path: Path) -> str:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read("environment.json"))["build_id"])

    assert build_id(three) != build_id(one)
