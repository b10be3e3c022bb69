"""What the drills share (tests/drills): where the examples are, the built artifacts' type,
the `sos` command run as a user would, and the platform the ``platform`` fixture of
tests/drills/conftest.py starts."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drills_harness import SOS, TOKEN, SosServer

from sos.models import ArtifactMetadata

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO / "examples" / "movielens"
SFIX = REPO / "docs" / "sos" / "examples" / "sfix-service"
SERVICE = "movielens"

Built = tuple[Path, ArtifactMetadata]


def movielens_data() -> Path:
    env = os.environ.get("MOVIELENS_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data" / "movielens-small").resolve()


def cli(
    server: SosServer, sos_home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a `sos` command against ``server`` as a user would."""
    return subprocess.run(
        [SOS, *args],
        env={
            **os.environ,
            "SOS_URL": server.url,
            "SOS_TOKEN": TOKEN,
            "SOS_HOME": str(sos_home),
            "COLUMNS": "200",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


@dataclass
class Platform:
    """`sos server` with the MovieLens example as revision 1 (v1) and 2 (v2)."""

    server: SosServer
    v1: str
    v2: str
    host: str = f"{SERVICE}.localhost"
