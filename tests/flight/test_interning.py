"""Interning item ids to dense codes."""

from __future__ import annotations

import numpy as np

from flight._interning import Interner, interner_for


def test_codes_are_dense_stable_and_in_first_seen_order() -> None:
    interner = Interner("item")
    assert interner.intern(np.array([50, 7, 50, 9])).tolist() == [0, 1, 0, 2]
    assert interner.intern(np.array([9, 1000, 7])).tolist() == [2, 3, 1]
    assert interner.ids(np.array([3, 0])).tolist() == [1000, 50]
    assert interner.lookup(np.array([7, 8])).tolist() == [1, -1]
    assert interner.size == 4


def test_strings_and_huge_ids_switch_to_hashing_and_keep_codes() -> None:
    interner = Interner("item")
    first = interner.intern(np.array([5, 6]))
    big = interner.intern(np.array([2**40, 5]))
    assert big.tolist() == [2, first[0]]
    words = Interner("sku")
    assert words.intern(np.array(["b", "a", "b"], dtype=object)).tolist() == [0, 1, 0]
    assert words.lookup(np.array(["a", "zzz"], dtype=object)).tolist() == [1, -1]


def test_one_interner_per_item_type() -> None:
    assert interner_for("movieId_t") is interner_for("movieId_t")
    assert interner_for("movieId_t") is not interner_for("sku_t")
