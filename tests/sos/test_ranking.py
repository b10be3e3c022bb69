"""The shadow report's math: item lists found in answers, overlap@k, rank-biased overlap,
and what one (primary, shadow) pair adds up to."""

from __future__ import annotations

import json

import pytest

from sos.ranking import ShadowTally, items_at, overlap_at_k, rbo


def flight(*ids: object) -> bytes:
    """An answer in Flight's shape (Result.to_dict())."""
    return json.dumps({"items": [{"item_id": i, "score": 1.0} for i in ids]}).encode()


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        ({"items": [{"item_id": 3}, {"item_id": 1}]}, "items[].item_id", ["3", "1"]),
        ({"data": {"recs": [{"id": "a"}]}}, "data.recs[].id", ["a"]),
        ({"items": []}, "items[].item_id", []),
        ({"items": "nope"}, "items[].item_id", None),
        ({"other": 1}, "items[].item_id", None),
        ({"items": [{"item_id": {"x": 1}}]}, "items[].item_id", None),
    ],
)
def test_items_are_found_where_the_path_says(
    document: object, path: str, expected: list[str] | None
) -> None:
    assert items_at(document, path) == expected


def test_overlap_and_rbo_agree_with_hand_worked_values() -> None:
    a = ["1", "2", "3", "4"]
    assert overlap_at_k(a, a, 4) == 1.0
    assert overlap_at_k(a, ["4", "3", "9", "8"], 4) == 0.5
    assert overlap_at_k([], [], 10) == 1.0
    assert rbo(a, a) == pytest.approx(1.0)
    assert rbo(a, ["5", "6", "7", "8"]) == 0.0
    # swapping the top two costs more than swapping the bottom two
    assert rbo(a, ["2", "1", "3", "4"]) < rbo(a, ["1", "2", "4", "3"]) < 1.0
    # depth 2, p=0.9: X1=0, X2=2 -> 0.1*(0/1 + 0.9*2/2) + (2/2)*0.81 = 0.9
    assert rbo(["1", "2"], ["2", "1"]) == pytest.approx(0.9)


def test_a_tally_compares_status_latency_and_rankings() -> None:
    tally = ShadowTally("shop-00001", "shop-00003", k=3)
    tally.mirrored = 4
    tally.add((200, 10.0, flight(1, 2, 3)), (200, 30.0, flight(1, 2, 3)))
    tally.add((200, 12.0, flight(1, 2, 3)), (200, 34.0, flight(9, 2, 1)))
    tally.add((200, 11.0, flight(1, 2, 3)), (500, 5.0, b"boom"))
    tally.add((200, 13.0, flight(4)), None)  # the shadow timed out
    report = tally.report()
    assert (report.compared, report.items_compared, report.shadow_errors) == (4, 2, 2)
    assert report.status_agreement == pytest.approx(2 / 4)
    assert report.overlap_at_k == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert report.top1_agreement == 0.5
    assert report.primary_empty_rate == 0.0 and report.shadow_empty_rate == 0.0
    assert (report.primary_p50_ms, report.shadow_p50_ms) == (11.5, 30.0)


def test_answers_without_items_are_compared_on_status_only() -> None:
    tally = ShadowTally("a-00001", "a-00002")
    tally.add((200, 1.0, b"plain text"), (200, 1.0, b"{}"))
    report = tally.report()
    assert report.compared == 1 and report.items_compared == 0 and report.rbo is None


def test_flight_answers_are_read_by_their_first_column() -> None:
    answer = {"movieId": [3, 1, 2], "title": ["c", "a", "b"], "reason": None, "warnings": [],
              "partial": False, "cut": [], "debug": None}  # fmt: skip
    tally = ShadowTally("a-00001", "a-00002", k=3)
    tally.add((200, 1.0, json.dumps(answer).encode()), (200, 1.0, json.dumps(answer).encode()))
    assert tally.report().items_compared == 1 and tally.report().rbo == 1.0
    assert items_at(answer, "movieId") == ["3", "1", "2"]
