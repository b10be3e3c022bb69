"""Builders are found through one registry, the same one plug-ins register into."""

from __future__ import annotations

from pathlib import Path

import pytest

import sos.build
from sos.build import Builder, BuiltArtifact, Project, ProjectError, get_builder, register_builder
from sos.build.detect import detect_builder
from sos.build.registry import _REGISTRY
from sos.build.settings import SosSettings, load_settings


def test_public_names_are_pinned() -> None:
    assert sorted(sos.build.__all__) == sorted(
        [
            "BuildCache",
            "BuildContext",
            "BuildError",
            "BuildFailedError",
            "BuildProgress",
            "BuildResult",
            "Builder",
            "BuiltArtifact",
            "NullProgress",
            "Project",
            "ProjectError",
            "SosSettings",
            "Tool",
            "ToolchainMissingError",
            "build",
            "builder_names",
            "get_builder",
            "inspect_project",
            "metadata_path",
            "read_metadata",
            "register_builder",
        ]
    )


def test_builtin_builders_are_registered_by_name() -> None:
    assert sos.build.builder_names()[:4] == ["python", "node", "go", "jvm"]
    assert get_builder("go").language == "go"


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ProjectError, match=r"unknown project type 'rust'.*python, node, go, jvm"):
        get_builder("rust")


def test_a_plugin_builder_is_found_by_type_and_detection(tmp_path: Path) -> None:
    @register_builder
    class ShellBuilder(Builder):
        name = "shell-test"
        language = "go"

        @classmethod
        def detect(cls, root: Path) -> str | None:
            return "run.sh" if (root / "run.sh").exists() else None

        def inspect(self, root: Path, settings: SosSettings) -> Project:
            raise NotImplementedError

        def build(self, project: Project, ctx: object) -> BuiltArtifact:  # type: ignore[override]
            raise NotImplementedError

    try:
        (tmp_path / "run.sh").write_text("#!/bin/sh\n")
        assert detect_builder(tmp_path, SosSettings()) is ShellBuilder
        assert get_builder("shell-test") is ShellBuilder
    finally:
        _REGISTRY.pop("shell-test", None)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"pyproject.toml": "[project]\n"}, "python"),
        ({"requirements.txt": ""}, "python"),
        ({"setup.py": ""}, "python"),
        ({"package.json": "{}"}, "node"),
        ({"go.mod": "module x\n"}, "go"),
        ({"pom.xml": "<project/>"}, "jvm"),
        ({"target/app-1.0.jar": ""}, "jvm"),
        ({"src/main/java/Main.java": ""}, "jvm"),
    ],
)
def test_project_type_is_detected_from_its_files(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert detect_builder(tmp_path, load_settings(tmp_path)).name == expected


def test_two_kinds_of_manifest_need_a_choice(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "package.json").write_text("{}")
    with pytest.raises(ProjectError, match=r"more than one kind of project.*--type"):
        detect_builder(tmp_path, load_settings(tmp_path))
    assert detect_builder(tmp_path, load_settings(tmp_path), "node").name == "node"
    (tmp_path / "sos.toml").write_text('type = "python"\n')
    assert detect_builder(tmp_path, load_settings(tmp_path)).name == "python"


def test_tool_sos_in_pyproject_settles_a_mixed_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.sos]\napp = "a:b"\n')
    (tmp_path / "package.json").write_text("{}")
    assert detect_builder(tmp_path, load_settings(tmp_path)).name == "python"


def test_empty_directory_explains_what_sos_builds(tmp_path: Path) -> None:
    with pytest.raises(
        ProjectError, match=r"no project found.*pyproject.toml.*package.json.*go.mod"
    ):
        detect_builder(tmp_path, load_settings(tmp_path))
