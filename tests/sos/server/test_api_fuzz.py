"""Fuzz the published OpenAPI schema with schemathesis against a real server: whatever a
client sends, the server never answers 5xx, and every answer matches the schema.

Bounded: a few dozen examples per operation (well under a minute in total)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sos_server import RunningServer, start_server

from sos import Artifact, Revision, Service
from sos.config import ServerSettings
from sos.server import create_app

MAX_EXAMPLES = 40


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzzed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    database_url = None
    if request.param == "postgresql":  # PostgreSQL is stricter about text (NUL characters)
        database_url = request.getfixturevalue("postgres_cluster").create_database()
    running = start_server(Path(tmp_path_factory.mktemp("fuzz")), database_url=database_url)
    with running.client() as admin:  # something to find, so reads reach the store
        admin.apply(Service(name="a", team="recs"))
        admin.create_revision("a", Revision(artifact=Artifact(name="a", version="1")))
    yield running
    running.stop()


def _published_schema() -> dict[str, Any]:
    """The schema the server publishes at /api/v1/openapi.json (built once, at collection)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = ServerSettings(data_dir=Path(data_dir), database_url="sqlite://")
        published: dict[str, Any] = create_app(settings).openapi()
        return published


schema = schemathesis.openapi.from_dict(_published_schema())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_never_answers_5xx_and_matches_its_schema(
    case: schemathesis.Case, fuzzed_server: RunningServer
) -> None:
    if case.path.endswith("/logs"):
        case.query = {**(case.query or {}), "follow": "false"}
    if case.headers:
        # HTTP clients compute Content-Length themselves; a fuzzed one is a malformed HTTP
        # message that uvicorn rightly rejects with 400 before the app sees it
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "content-length"}
    case.call_and_validate(
        base_url=fuzzed_server.url,
        headers={"Authorization": f"Bearer {fuzzed_server.admin_token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=10,
    )
