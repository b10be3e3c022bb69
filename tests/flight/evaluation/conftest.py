"""Each test starts with the interaction data sets the suite had (none registered by tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # eval_ops

from flight import data


@pytest.fixture(autouse=True)
def _isolated_data_sets() -> Iterator[None]:
    saved = dict(data._sets)
    yield
    data._sets.clear()
    data._sets.update(saved)
    data._derived.clear()
