from decimal import Decimal

import pytest

from sos.quantity import QuantityError, cpu_millicores, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2G", Decimal(2_000_000_000)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1000m", Decimal(1)),
        ("0.5", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("1.5Gi", Decimal(int(1.5 * 2**30))),
    ],
)
def test_quantities_parse_the_kubernetes_way(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_cpu_and_memory_round_up_to_whole_units() -> None:
    assert cpu_millicores("0.5") == 500
    assert cpu_millicores("0.0001") == 1
    assert memory_bytes("1.5") == 2


@pytest.mark.parametrize("text", ["", "2 G", "two", "2GB", "1.2.3", "Mi"])
def test_bad_quantities_say_how_to_write_one(text: str) -> None:
    with pytest.raises(QuantityError, match="512Mi"):
        parse_quantity(text)
