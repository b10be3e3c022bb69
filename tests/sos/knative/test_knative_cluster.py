"""The Knative backend against a real Kubernetes cluster with Knative Serving.

``test_scenario_on_a_real_cluster`` runs only when ``SOS_TEST_KUBECONFIG`` names a
kubeconfig (skipped with that reason otherwise: no cluster can run on the CI machines).
Optional: ``SOS_TEST_NAMESPACE`` (default "default"), ``SOS_TEST_IMAGE_REGISTRY`` (where
the runtime images are pushed), ``SOS_TEST_ARTIFACT_URL`` (the SOS server as pods reach
it) and ``SOS_TEST_EXPECT_READY=1`` when both are set up so that revisions really start.
It creates one Knative Service named ``sos-e2e-<random>`` and deletes it at the end.
The same scenario also runs against the stand-in, so that it is known to be right.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable

import pytest
from knative_samples import desired, revision

from sos.runtime.base import ObservedService
from sos.runtime.knative import KnativeBackend, KnativeSettings
from sos.runtime.knative.settings import DEFAULT_REGISTRY

KUBECONFIG = os.environ.get("SOS_TEST_KUBECONFIG")


async def _until(
    backend: KnativeBackend, name: str, check: Callable[[ObservedService], bool]
) -> ObservedService:
    while True:
        observed = await backend.observe(name)
        if observed is not None and check(observed):
            return observed
        await asyncio.sleep(1)


async def scenario(backend: KnativeBackend, *, expect_ready: bool) -> None:
    name = f"sos-e2e-{uuid.uuid4().hex[:8]}"
    one = [revision(1, service=name)]
    two = [*one, revision(2, service=name)]
    try:
        async with asyncio.timeout(300):
            # the API server and Knative's webhook accept what SOS renders (strictly)
            await backend.apply(desired(one, service=name))
            await backend.apply(desired(two, routes=[(2, 50, None), (1, 50, "old")], service=name))
            both = {f"{name}-00001", f"{name}-00002"}
            observed = await _until(backend, name, lambda o: both <= set(o.revisions))
            assert observed.url and observed.url.startswith("http")
            assert name in await backend.list_services()
            if expect_ready:
                observed = await _until(backend, name, lambda o: o.ready)
                assert "old" in observed.tag_urls
            # a rollback: all traffic back to revision 1; the template stays revision 2
            await backend.apply(desired(two, routes=[(1, 100, None)], service=name))
            observed = await _until(backend, name, lambda o: o.reason != "Deploying")
            assert f"{name}-00002" in observed.revisions
    finally:
        await backend.delete(name)
    for _ in range(120):
        if await backend.observe(name) is None:
            break
        await asyncio.sleep(1)
    assert await backend.observe(name) is None


@pytest.mark.slow
@pytest.mark.skipif(
    not KUBECONFIG,
    reason="set SOS_TEST_KUBECONFIG to a kubeconfig of a cluster with Knative Serving to run "
    "the real-cluster test",
)
async def test_scenario_on_a_real_cluster() -> None:
    settings = KnativeSettings(
        kubeconfig=KUBECONFIG,
        namespace=os.environ.get("SOS_TEST_NAMESPACE", "default"),
        image_registry=os.environ.get("SOS_TEST_IMAGE_REGISTRY", DEFAULT_REGISTRY),
        artifact_url=os.environ.get("SOS_TEST_ARTIFACT_URL"),
    )
    backend = KnativeBackend(settings, revision_timeout=120)
    await backend.start()
    try:
        await scenario(backend, expect_ready=os.environ.get("SOS_TEST_EXPECT_READY") == "1")
    finally:
        await backend.close()


async def test_the_real_cluster_scenario_passes_on_the_standin(backend: KnativeBackend) -> None:
    await scenario(backend, expect_ready=True)
