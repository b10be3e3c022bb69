"""Revision options are checked against the artifact they run: what cannot apply is refused
with the reason and what to use; Knative's containerConcurrency follows the worker model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sos import ValidationError
from sos.launch import check_options, container_concurrency, worker_class
from sos.models import ArtifactMetadata, RevisionSpec


def artifact(language: str = "python", interface: str | None = "wsgi") -> ArtifactMetadata:
    return ArtifactMetadata(
        name="app",
        version="1",
        language=language,  # type: ignore[arg-type]
        runtime_version="3.11",
        entry_point="app:app",
        digest="sha256:" + "a" * 64,
        size=1,
        created_by="t",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        extra={"interface": interface} if interface else {},
    )


def spec(**gunicorn: Any) -> RevisionSpec:
    return RevisionSpec.model_validate(
        {"artifact": {"name": "app", "version": "1"}, "gunicorn_config": gunicorn}
    )


@pytest.mark.parametrize(
    ("language", "interface", "gunicorn", "refused"),
    [
        ("python", "asgi", {"worker_class": "gevent"}, "only uvicorn workers serve"),
        ("python", "asgi", {"worker_class": "sync"}, "only uvicorn workers serve"),
        ("python", "asgi", {"thread_count": 4}, "does not apply to uvicorn workers"),
        ("python", "wsgi", {"worker_class": "uvicorn"}, "it is a WSGI app"),
        ("python", "wsgi", {"worker_class": "gevent", "thread_count": 8}, "gevent workers"),
        ("python", "command", {"worker_count": 4}, "runs its own command"),
        ("node", None, {"worker_count": 2}, "a node artifact"),
        ("go", None, {"thread_count": 2}, "a go artifact"),
        ("jvm", None, {"timeout_seconds": 60}, "a jvm artifact"),
    ],
)
def test_options_that_cannot_apply_are_refused_with_what_to_use(
    language: str, interface: str | None, gunicorn: dict[str, Any], refused: str
) -> None:
    with pytest.raises(ValidationError, match=refused) as caught:
        check_options(spec(**gunicorn), artifact(language, interface))
    assert "drop" in str(caught.value)  # and what to do instead


@pytest.mark.parametrize(
    ("language", "interface", "gunicorn"),
    [
        ("python", "asgi", {}),
        ("python", "asgi", {"worker_class": "uvicorn", "worker_count": 4}),
        ("python", "wsgi", {"worker_class": "gevent", "worker_count": 2}),
        ("python", "wsgi", {"worker_count": 2, "thread_count": 8}),
        ("python", None, {"worker_count": 2, "thread_count": 4}),  # an older artifact
        ("node", None, {}),
        ("python", "command", {}),
    ],
)
def test_options_that_apply_pass(
    language: str, interface: str | None, gunicorn: dict[str, Any]
) -> None:
    check_options(spec(**gunicorn), artifact(language, interface))


@pytest.mark.parametrize(
    ("interface", "gunicorn", "expected_class", "concurrency"),
    [
        ("wsgi", {}, "sync", 1),
        ("wsgi", {"worker_count": 2, "thread_count": 4}, "gthread", 8),
        ("wsgi", {"worker_class": "gevent", "worker_count": 2}, "gevent", 0),
        ("asgi", {"worker_count": 3}, "uvicorn", 0),
        ("command", {}, None, 0),
    ],
)
def test_knative_concurrency_follows_the_worker_model(
    interface: str, gunicorn: dict[str, Any], expected_class: str | None, concurrency: int
) -> None:
    revision, built = spec(**gunicorn), artifact("python", interface)
    assert worker_class(revision, built) == expected_class
    assert container_concurrency(revision, built) == concurrency
