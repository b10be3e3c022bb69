"""Fixtures of the Knative tests: a stand-in Kubernetes API server with Knative, and a
KnativeBackend connected to it through a real kubeconfig file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
from knative_standin import KnativeStandIn, write_kubeconfig

from sos.runtime.knative import KnativeBackend, KnativeSettings


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[KnativeStandIn, str]]:
    """The stand-in API server on a free port of 127.0.0.1, and its URL."""
    async with kmock.KubernetesScaffold() as handler, kmock.Server(handler) as server:
        yield KnativeStandIn(handler), str(server.url).rstrip("/")


@pytest.fixture
def standin(cluster: tuple[KnativeStandIn, str]) -> KnativeStandIn:
    return cluster[0]


@pytest.fixture
def kubeconfig(cluster: tuple[KnativeStandIn, str], tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", cluster[1])


@pytest.fixture
async def backend(kubeconfig: Path) -> AsyncIterator[KnativeBackend]:
    settings = KnativeSettings(
        kubeconfig=str(kubeconfig), artifact_url="http://sos.sos-system.svc:8700"
    )
    knative = KnativeBackend(settings, poll_interval=0.01, revision_timeout=2, min_interval=0)
    await knative.start()
    yield knative
    await knative.close()
