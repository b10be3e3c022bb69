"""Fixtures for serving tests: a real uvicorn server on 127.0.0.1 (port 0) in a thread, and
tracing into an in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from serving_helpers import ServerThread

from flight import tracing


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServerThread]]:
    """``serve(app)`` starts ``app`` on a real socket and returns the running server."""
    started: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span Flight records during the test, in an in-memory exporter."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporter, service_name="flight-tests")
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture
def client() -> Iterator[Callable[[str], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(base_url: str) -> httpx.Client:
        c = httpx.Client(base_url=base_url, timeout=30)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
