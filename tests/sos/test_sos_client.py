"""Client behaviour a user relies on: wait_ready's failure and timeout errors, clear errors
when the server is unreachable, names that cannot escape their URL segment."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from sos import (
    Artifact,
    Client,
    NotFoundError,
    NotReadyError,
    Revision,
    RevisionFailedError,
    ServerUnavailableError,
    Service,
    ValidationError,
)
from sos.models import Instances
from sos.runtime.base import ObservedRevision, ObservedService
from sos.runtime.fake import FakeBackend

if TYPE_CHECKING:
    from sos_server import RunningServer

SVC = "sfix-service"


class StuckBackend(FakeBackend):
    """Revision 1 never gets ready; revision 2 crash-loops."""

    async def observe(self, name: str) -> ObservedService | None:
        seen = await super().observe(name)
        if seen is None:
            return None
        revisions = {
            rev_id: ObservedRevision(
                id=rev_id,
                ready=False,
                reason="CrashLoop" if rev_id.endswith("2") else "Deploying",
                message="exit code 3; last log line: ImportError: no module named app"
                if rev_id.endswith("2")
                else None,
                failed=rev_id.endswith("2"),
                instances=Instances(wanted=1),
            )
            for rev_id in seen.revisions
        }
        return ObservedService(name=name, ready=False, reason="Deploying", revisions=revisions)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_wait_ready_raises_failure_with_the_reason_at_once(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server(backend=StuckBackend())
    with server.client() as c:
        c.apply(Service(name=SVC, team="recs"))
        c.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
        c.create_revision(SVC, Revision(artifact=Artifact(name="a", version="2")))
        with pytest.raises(RevisionFailedError, match="CrashLoop: exit code 3"):
            c.wait_ready(SVC, 2, timeout=30, interval=0.05)  # raises as soon as it failed
    clock = FakeTime()
    with Client(server.url, server.admin_token, sleep=clock.sleep, monotonic=clock.monotonic) as c:
        with pytest.raises(NotReadyError, match="not ready after 5s") as info:
            c.wait_ready(SVC, 1, timeout=5, interval=1)
        assert not isinstance(info.value, RevisionFailedError)
        assert clock.now == 5  # it waited on the injected clock, not the wall clock


def test_unreachable_server_is_server_unavailable() -> None:
    with (
        Client("http://127.0.0.1:9", "x") as client,
        pytest.raises(ServerUnavailableError, match="start one with `sos server`"),
    ):
        client.list_services()


def test_names_cannot_escape_their_path_segment(admin: Client) -> None:
    with pytest.raises(NotFoundError):
        admin.get_service("../tokens")
    with pytest.raises(ValidationError, match="is not a revision"):
        admin.get_revision(SVC, "../../tokens")


def test_traffic_mapping_mistakes_are_sos_validation_errors(admin: Client) -> None:
    admin.apply(Service(name=SVC, team="recs"))
    admin.create_revision(SVC, Revision(artifact=Artifact(name="a", version="1")))
    with pytest.raises(ValidationError, match="sum to 100, these sum to 90"):
        admin.set_traffic(SVC, {1: 90})
