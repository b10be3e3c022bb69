"""The artifacts table on every database: one digest per name+version, races included."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from sos.errors import ConflictError
from sos.models import ArtifactMetadata
from sos.store import Store
from sos.store.artifacts import ArtifactTable


def meta(version: str, fill: str) -> ArtifactMetadata:
    return ArtifactMetadata(
        name="recs",
        version=version,
        language="python",
        runtime_version="3.11",
        entry_point="recs.api:app",
        digest="sha256:" + fill * 64,
        size=10,
        created_by="ada",
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        extra={"interface": "asgi"},
    )


@pytest.fixture
def table(database_url: str) -> ArtifactTable:
    store = Store(database_url)
    store.migrate()
    return ArtifactTable(store)


def test_add_get_list_and_find_by_digest(table: ArtifactTable) -> None:
    recorded, created = table.add(meta("1.0.0", "a"), pushed_by="ci", team="recs-team")
    assert created and recorded.pushed_by == "ci"
    table.add(meta("1.1.0", "b"), pushed_by="ci", team="recs-team")
    assert table.get("recs", "1.0.0") == recorded
    assert [m.version for m in table.list("recs")] == ["1.0.0", "1.1.0"]
    assert table.by_digest("sha256:" + "b" * 64).version == "1.1.0"  # type: ignore[union-attr]
    assert table.owner("recs") == (True, "recs-team")
    assert table.owner("other") == (False, None)


def test_same_digest_is_a_no_op_other_digest_a_conflict(table: ArtifactTable) -> None:
    first, _ = table.add(meta("1.0.0", "a"), pushed_by="ci", team=None)
    again, created = table.add(meta("1.0.0", "a"), pushed_by="someone", team=None)
    assert not created and again.pushed_by == "ci"
    with pytest.raises(ConflictError, match="already exists with other content"):
        table.add(meta("1.0.0", "c"), pushed_by="someone", team=None)
    assert table.get("recs", "1.0.0") == first


def test_concurrent_pushes_of_one_version_leave_exactly_one_digest(table: ArtifactTable) -> None:
    results: list[str] = []
    barrier = threading.Barrier(6)

    def push(fill: str) -> None:
        barrier.wait()
        try:
            table.add(meta("2.0.0", fill), pushed_by=fill, team=None)
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=push, args=(f,)) for f in "abcdef"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["conflict"] * 5 + ["ok"]
    assert len(table.list("recs")) == 1
