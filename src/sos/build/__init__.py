"""``sos build``: turn a project into a self-contained, immutable artifact.

High layer: ``build(dir)`` detects the project type, checks it, builds it with its
ecosystem's tool and records the artifact. Low layer: the ``Builder`` seam and its
registry (``register_builder``), for a new kind of project.

Built-in builders: ``python`` (shiv zipapp), ``node`` (ncc bundle), ``go`` (static
binary), ``jvm`` (executable jar).
"""

from sos.build.api import BuildResult, build, inspect_project, metadata_path, read_metadata
from sos.build.base import BuildContext, Builder, BuiltArtifact, Project, Tool
from sos.build.cache import BuildCache
from sos.build.errors import BuildError, BuildFailedError, ProjectError, ToolchainMissingError
from sos.build.log import BuildProgress, NullProgress
from sos.build.registry import builder_names, get_builder, register_builder
from sos.build.settings import SosSettings

__all__ = [
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
