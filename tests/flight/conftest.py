"""Fixtures for Flight tests: a clean operator registry and provider table per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flight import providers
from flight.operators.registry import scoped_registry


@pytest.fixture(autouse=True)
def _isolated_registries() -> Iterator[None]:
    """Operators and providers registered by a test disappear after it."""
    saved = dict(providers._providers)
    with scoped_registry():
        yield
    providers._providers.clear()
    providers._providers.update(saved)
