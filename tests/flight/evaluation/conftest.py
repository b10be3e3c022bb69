"""Each test starts with the interaction data sets the suite had (none registered by tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flight import data


@pytest.fixture(autouse=True)
def _isolated_data_sets() -> Iterator[None]:
    saved = dict(data._sets)
    yield
    data._sets.clear()
    data._sets.update(saved)
    data._derived.clear()
