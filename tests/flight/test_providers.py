"""Attribute providers: the table provider, the registry, lazy factories."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dists import install, run

from flight import TableProvider, get_provider, register_provider
from flight._interning import Interner
from flight.errors import ProviderError

MOVIES = pd.DataFrame(
    {
        "movieId": [10, 20, 30, 40],
        "title": ["A", "B", "C", "D"],
        "genre": ["x", "y", "x", "x"],
        "year": [1990, 2000, 2010, 2020],
    }
)


def test_lookup_aligns_with_ids_and_marks_unknown_missing() -> None:
    provider = TableProvider(MOVIES, key="movieId")
    found = provider.lookup(np.array([30, 99, 10]), ["title", "year"])
    assert pd.Series(found["title"]).tolist()[0::2] == ["C", "A"]
    assert pd.isna(found["title"][1]) and np.isnan(found["year"][1])


def test_lookup_by_codes_matches_lookup_by_ids() -> None:
    provider = TableProvider(MOVIES, key="movieId")
    interner = Interner("movieId")
    ids = np.array([40, 10, 77, 20])
    codes = interner.intern(ids)
    by_codes = provider.lookup_codes(interner, codes, ids, ["title", "genre"])
    by_ids = provider.lookup(ids, ["title", "genre"])
    for column in ("title", "genre"):
        assert pd.Series(by_codes[column]).equals(pd.Series(by_ids[column]))
    more = np.array([30, 40])  # a later run's new ids too
    assert list(provider.lookup_codes(interner, interner.intern(more), more, ["year"])["year"]) == [
        2010,
        2020,
    ]


def test_repeated_strings_are_stored_as_categories() -> None:
    provider = TableProvider(MOVIES, key="movieId")
    assert isinstance(provider.lookup(np.array([10]), ["genre"])["genre"], pd.Categorical)
    assert not isinstance(provider.lookup(np.array([10]), ["title"])["title"], pd.Categorical)


def test_key_may_be_the_index_and_must_be_unique() -> None:
    provider = TableProvider(MOVIES.set_index("movieId"))
    assert provider.item_type == "movieId"
    with pytest.raises(ProviderError, match="duplicate ids"):
        TableProvider(pd.concat([MOVIES, MOVIES]), key="movieId")
    with pytest.raises(ProviderError, match="no key column 'sku'"):
        TableProvider(MOVIES, key="sku")


def test_registry_clash_unless_replace() -> None:
    register_provider("films", TableProvider(MOVIES, key="movieId"))
    with pytest.raises(ProviderError, match="already registered as 'films'"):
        register_provider("films", TableProvider(MOVIES, key="movieId"))
    register_provider(
        "films", TableProvider(MOVIES[["movieId", "year"]], key="movieId"), replace=True
    )
    assert get_provider("films").columns == ["year"]


def test_factory_is_called_once_on_first_use() -> None:
    calls: list[int] = []

    def make() -> TableProvider:
        calls.append(1)
        return TableProvider(MOVIES, key="movieId")

    register_provider("movies", make)
    assert calls == []
    assert get_provider("movies") is get_provider("movies")
    assert calls == [1]


def test_unknown_provider_lists_registered_ones() -> None:
    register_provider("movies", TableProvider(MOVIES, key="movieId"))
    with pytest.raises(ProviderError, match=r"no attribute provider registered as 'x'.*movies"):
        get_provider("x")


def test_a_provider_from_a_separately_installed_package(tmp_path: Path) -> None:
    install(
        tmp_path,
        "acme_providers",
        "[flight.providers]\ncolours = acme_providers:colours\n",
        {
            "acme_providers": """
                import pandas as pd
                from flight import TableProvider

                print("imported")

                def colours():
                    return TableProvider(pd.DataFrame({"id": [1], "c": ["red"]}), key="id")
            """
        },
    )
    code = """
        import numpy as np
        from flight.providers import get_provider, provider_names
        print(provider_names())
        print(list(get_provider("colours").lookup(np.array([1]), ["c"])["c"]))
    """
    proc = run(tmp_path, "-c", textwrap.dedent(code))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['colours']", "imported", "['red']"]
