"""Fuzz drill: schemathesis over the whole SOS API of a live server (local runtime, the
MovieLens example deployed and serving), with an admin token, a reader's, another team's
writer's and a made-up one; then over the deployed Flight service's own OpenAPI, through
the router.

Held: no answer is a 5xx, and nothing is lost: afterwards the deployed service has the same
revisions, traffic and artifact, and still answers (the fuzzer may create things of its own
with the admin token; it never reaches what exists)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from drills_harness import TOKEN, report, served_split
from drills_platform import SERVICE, Platform
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from sos import Client
from sos.config import ServerSettings
from sos.server import create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXAMPLES = 10  # per operation and token: 23 operations x 4 tokens x ~10 = ~1,000 requests
CALLS: dict[str, dict[int, int]] = {}  # token name -> status -> count


def _published_schema() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = ServerSettings(data_dir=Path(data_dir), database_url="sqlite://")
        schema: dict[str, Any] = create_app(settings).openapi()
        return schema


sos_schema = schemathesis.openapi.from_dict(_published_schema())


def _kept(client: Client) -> dict[str, object]:
    """What the fuzzer must not change."""
    return {
        "revisions": [(r.id, r.artifact.digest) for r in client.list_revisions(SERVICE)],
        "traffic": [(r.revision, r.percent, r.tag) for r in client.get_traffic(SERVICE).routes],
        "team": client.get_service(SERVICE).team,
        "artifacts": [
            (a.name, a.version, a.digest) for a in client.list_artifacts("movielens-recs")
        ],
    }


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> Iterator[dict[str, str]]:
    with platform.server.client() as admin:
        made = {
            "admin": TOKEN,
            "reader": admin.create_token("fuzz-reader", role="reader").secret,
            "writer of another team": admin.create_token("fuzz-search", team="search").secret,
            "made-up": "sos_" + "0" * 43,
        }
        before = _kept(admin)
    yield made
    with platform.server.client() as admin:
        after = _kept(admin)
    served = served_split(platform.server.router, platform.host, 20, "/recs/for_user?user_id=3")
    calls = "; ".join(
        f"{who}: {sum(c.values())} requests, " + ", ".join(f"{n}x{s}" for s, n in sorted(c.items()))
        for who, c in CALLS.items()
    )
    report(
        "bad input: schemathesis over the whole SOS API of a live server",
        calls,
        f"no 5xx; afterwards {SERVICE} has the same revisions, traffic, team and artifact "
        f"({'yes' if after == before else 'NO'}) and answered 20 of 20 requests ({served})",
    )
    assert after == before


@pytest.fixture(scope="module", params=["admin", "reader", "writer of another team", "made-up"])
def who(request: pytest.FixtureRequest, tokens: dict[str, str]) -> tuple[str, str]:
    return str(request.param), tokens[str(request.param)]


def _tidy(case: schemathesis.Case) -> None:
    if case.path.endswith("/logs"):
        case.query = {**(case.query or {}), "follow": "false"}  # a tail, not a stream
    if case.headers:
        # HTTP clients compute Content-Length; a fuzzed one is malformed HTTP (uvicorn: 400)
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "content-length"}


@sos_schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_sos_api_never_answers_5xx_whoever_asks(
    case: schemathesis.Case, platform: Platform, who: tuple[str, str]
) -> None:
    _tidy(case)
    response = case.call_and_validate(
        base_url=platform.server.url,
        headers={"Authorization": f"Bearer {who[1]}"},
        checks=[not_a_server_error, status_code_conformance],
        timeout=30,
    )
    counts = CALLS.setdefault(who[0], {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1


def test_flight_service_never_answers_5xx_to_what_its_openapi_allows(platform: Platform) -> None:
    """Every operation of the deployed MovieLens service's own OpenAPI (read through the
    router), fuzzed. (Run operation by operation here: schemathesis' pytest fixture loader
    does not work with pytest 9.) A 504 is right only when the request's own budget
    (budget_ms, X-Flight-Budget-Ms) ran out, as documented."""
    base = f"{platform.server.router}/s/{SERVICE}"
    schema = schemathesis.openapi.from_dict(httpx.get(f"{base}/openapi.json", timeout=30).json())
    calls: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: schemathesis.Case) -> None:
            _tidy(case)
            response = case.call(base_url=base, timeout=30)
            calls[response.status_code] = calls.get(response.status_code, 0) + 1
            if response.status_code == 504 and "request deadline" in response.text:
                return  # documented: the budget the caller gave (budget_ms) ran out
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r}: "
                f"{response.status_code} {response.text[:300]}"
            )

        fuzz()
    report(
        "bad input: schemathesis over the deployed Flight service's OpenAPI (via the router)",
        f"{len(operations)} operations ({', '.join(o.label for o in operations)}), "
        f"{sum(calls.values())} requests: "
        + ", ".join(f"{n}x{s}" for s, n in sorted(calls.items()))
        + "; no 5xx but 504s where the budget the request set itself ran out (budget_ms)",
    )
