"""The error family survives the wire: the server's JSON turns back into the same class."""

from __future__ import annotations

import pytest

from sos import errors


@pytest.mark.parametrize(
    "cls",
    [
        errors.ValidationError,
        errors.AuthenticationError,
        errors.PermissionDeniedError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.PayloadTooLargeError,
        errors.BackendError,
        errors.ServerUnavailableError,
        errors.ServerError,
    ],
)
def test_every_error_round_trips_through_its_payload(cls: type[errors.SOSError]) -> None:
    original = cls("what went wrong", details={"field": "team"})
    rebuilt = errors.error_from_payload(cls.status_code, original.to_payload())
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.details) == ("what went wrong", {"field": "team"})


def test_unknown_payloads_fall_back_on_the_status() -> None:
    assert isinstance(errors.error_from_payload(409, {"detail": "x"}), errors.ConflictError)
    assert isinstance(errors.error_from_payload(599, "garbage"), errors.ServerError)
    assert isinstance(errors.error_from_payload(418, None), errors.ValidationError)
