"""Kubernetes-style resource quantities: ``2G``, ``512Mi``, ``1000m``, ``0.5``, ``1e3``.

The grammar follows Kubernetes' ``resource.Quantity``: a signed decimal number followed by
an optional suffix, either binary (``Ki Mi Gi Ti Pi Ei``), decimal (``n u m k M G T P E``)
or a decimal exponent (``e3``, ``E-2``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["QuantityError", "cpu_millicores", "memory_bytes", "parse_quantity"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_PATTERN = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str | int | float) -> Decimal:
    """Return the value of a quantity as a Decimal (``"512Mi"`` -> ``536870912``)."""
    raw = str(text).strip()
    match = _PATTERN.match(raw)
    if not match:
        raise QuantityError(
            f"{raw!r} is not a quantity: write a number with an optional unit, "
            "like 512Mi, 2G, 1000m or 0.5"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{raw!r} is not a number") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * (Decimal(10) ** int(suffix[1:]))


def memory_bytes(text: str) -> int:
    """Memory as whole bytes, rounded up (Kubernetes rounds fractional bytes up too)."""
    value = parse_quantity(text)
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def cpu_millicores(text: str) -> int:
    """CPU as whole millicores, rounded up (``"0.5"`` -> 500, ``"250m"`` -> 250)."""
    value = parse_quantity(text) * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
