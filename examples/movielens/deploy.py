"""Deploy the MovieLens recommender with SOS: ``sos deploy examples/movielens/deploy.py``.

One artifact serves either pipeline: ``MOVIELENS_VERSION`` on the revision picks v1 or v2,
so ``MOVIELENS_VERSION=v2 sos deploy examples/movielens/deploy.py`` makes a revision of the
same artifact that serves v2. The artifact is the one ``sos build examples/movielens --push``
made: its name and version are read from ``pyproject.toml`` (bump the version there when the
code changes: a pushed version never changes its bytes), or ``ARTIFACT_VERSION`` names
another version of it.

The data and the model travel in the artifact (``data/`` and ``models/``, made by
``python examples/movielens/movielens_model.py`` before ``sos build``): an instance runs in a
sandbox that sees no path of the machine, as it would in a container.
"""

import os
import tomllib
from pathlib import Path

from sos import Artifact, Autoscaling, EnvVar, HealthCheck, Revision, Service

HERE = Path(__file__).resolve().parent
PROJECT = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
VERSION = os.environ.get("MOVIELENS_VERSION", "v1")
if VERSION not in ("v1", "v2", "v3"):
    raise ValueError(f"MOVIELENS_VERSION={VERSION!r}: the example has pipelines v1, v2 and v3")

service = Service(name="movielens", team="recs", description="MovieLens recommender (Flight)")
revision = Revision(
    artifact=Artifact(
        name=PROJECT["name"], version=os.environ.get("ARTIFACT_VERSION") or PROJECT["version"]
    ),
    env_vars=[
        EnvVar(id="MOVIELENS_VERSION", value=VERSION),
        # a demo: the explorer and ?debug=true for anyone (they list every candidate id);
        # leave it out for a public service, or give FLIGHT_DEBUG_TOKEN to your team only
        EnvVar(id="FLIGHT_DEBUG", value="1"),
    ],
    health_check=HealthCheck(liveness_probe="/healthz", readiness_probe="/readyz"),
    autoscaling=Autoscaling(min_scale=1, max_scale=3, target_concurrency=20),
    description=f"pipeline {VERSION}",
)
