"""An in-memory backend that marks every revision ready: for tests, and for running the
control plane on its own. Nothing is started; nothing answers HTTP."""

from __future__ import annotations

from sos.models import Instances
from sos.runtime.base import Backend, DesiredService, ObservedRevision, ObservedService

__all__ = ["FakeBackend"]


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, *, domain: str = "sos.invalid") -> None:
        self.domain = domain
        self.applied: dict[str, DesiredService] = {}
        #: every apply call in order, so tests can see what the reconciler asked for
        self.calls: list[tuple[str, str]] = []

    async def apply(self, desired: DesiredService) -> None:
        self.applied[desired.service.name] = desired
        self.calls.append(("apply", desired.service.name))

    async def observe(self, name: str) -> ObservedService | None:
        desired = self.applied.get(name)
        if desired is None:
            return None
        routable = desired.routable()
        revisions = {
            rev.id: ObservedRevision(
                id=rev.id,
                ready=True,
                reason="Ready",
                instances=Instances(
                    wanted=1 if rev.id in routable else 0,
                    running=1 if rev.id in routable else 0,
                    ready=1 if rev.id in routable else 0,
                ),
                url=f"http://{rev.id}.{self.domain}",
            )
            for rev in desired.revisions
            if rev.id is not None
        }
        tags = {
            route.tag: f"http://{route.tag}-{name}.{self.domain}"
            for route in (desired.traffic.routes if desired.traffic else [])
            if route.tag
        }
        has_traffic = desired.traffic is not None
        return ObservedService(
            name=name,
            ready=has_traffic,
            reason="Ready" if has_traffic else "NoTraffic",
            message=None if has_traffic else "create a revision to give the service traffic",
            url=f"http://{name}.{self.domain}",
            revisions=revisions,
            tag_urls=tags,
        )

    async def delete(self, name: str) -> None:
        self.applied.pop(name, None)
        self.calls.append(("delete", name))

    async def list_services(self) -> list[str]:
        return sorted(self.applied)
