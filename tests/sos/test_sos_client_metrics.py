"""``Client.metrics``: the metrics API as typed models (the ones the server answers with),
against a real server on a free port whose backend answers a known load
(``tests/support/sos_metrics_load.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sos_metrics_load import (
    ERRORS,
    REQUESTS,
    Silent,
    deploy_shop,
    settled,
    start_loaded,
)
from sos_server import RunningServer

import sos
from sos.errors import NotFoundError, ValidationError
from sos.models import Instances


@pytest.fixture
def loaded(
    sos_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
) -> RunningServer:
    return start_loaded(sos_server, monkeypatch)


def test_client_metrics_returns_the_shared_typed_models(loaded: RunningServer) -> None:
    with loaded.client() as client:
        data = settled(client)
    assert isinstance(data, sos.ServiceMetrics) and data.available
    assert (data.window_seconds, data.interval_seconds) == (60, 0.2)
    two = data.revision("00002")
    assert two is data.revision(2) is data.revision("shop-00002")
    assert two is not None and isinstance(two, sos.RevisionSeries)
    assert (two.requests, two.errors) == (REQUESTS, ERRORS)
    assert two.p50_ms == pytest.approx(55.0) and two.p99_ms == pytest.approx(99.1)
    assert two.instances == Instances(wanted=2, running=2, ready=1)
    assert max(p.requests_per_second for p in two.points) > 0
    assert isinstance(two.latest, sos.MetricsPoint)
    one = data.revision(1)
    assert one is not None and one.requests == 0  # the fake's pretend instance: no requests
    assert data.revision(7) is None and data.revision("other-00002") is None


def test_client_metrics_narrows_to_one_revision_and_takes_seconds(loaded: RunningServer) -> None:
    with loaded.client() as client:
        settled(client)
        only = client.metrics("shop", window=30, revision=2)
        assert only.window_seconds == 30
        assert [r.revision for r in only.revisions] == ["shop-00002"]
        assert client.metrics("shop", "90s", "shop-00001").revision(1) is not None


def test_client_metrics_errors_say_what_to_fix(loaded: RunningServer) -> None:
    with loaded.client() as client:
        with pytest.raises(ValidationError, match="between 10s and 15m"):
            client.metrics("shop", window="1h")
        with pytest.raises(ValidationError, match="not a duration"):
            client.metrics("shop", window="five minutes")
        with pytest.raises(NotFoundError, match="shop-00009"):
            client.metrics("shop", revision=9)
        with pytest.raises(ValidationError, match="belongs to service 'other'"):
            client.metrics("shop", revision="other-00001")
        with pytest.raises(NotFoundError, match="nope"):
            client.metrics("nope")


def test_client_metrics_of_a_backend_without_metrics_is_unavailable_with_a_reason(
    sos_server: Callable[..., RunningServer],
) -> None:
    server = sos_server(backend=Silent())
    deploy_shop(server)
    with server.client() as client:
        data = client.metrics("shop")
    assert not data.available and data.revisions == []
    assert data.message is not None and "Prometheus" in data.message
