"""What served functions return, as HTTP responses."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from starlette.responses import Response

from flight.errors import FlightError, OperatorError, SourceError
from flight.result import Result, jsonable

__all__ = ["error_response", "json_response", "respond", "result_body", "result_status"]

JSON = "application/json"


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | pd.Series | pd.Index):
        return jsonable(value)
    if isinstance(value, datetime.datetime | datetime.date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf (not JSON) as null, for bodies that json.dumps refused."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    try:
        content = json.dumps(body, separators=(",", ":"), default=_default, allow_nan=False)
    except ValueError:
        content = json.dumps(_clean(body), separators=(",", ":"), default=_default)
    return Response(content, status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


def result_status(result: Result) -> int:
    """200 for items, an empty or a partial result; 504 when the deadline cut a required
    source; 503 when a source failed; 500 when another operator failed."""
    error = result.error
    if error is None:
        return 200
    if isinstance(error, SourceError):
        cut = error.operator is not None and any(
            s.status == "cut" and s.operator is error.operator for s in result.stats
        )
        return 504 if cut else 503
    return 500


def result_body(result: Result) -> dict[str, Any]:
    body = result.to_dict()
    error = result.error
    if error is not None:
        body["error"] = {
            "type": type(error).__name__,
            "message": str(error),
            "operator": repr(error.operator)
            if isinstance(error, OperatorError) and error.operator is not None
            else None,
        }
    return body


def respond(value: Any) -> Response:
    """A served function's return value as a response: a :class:`~flight.Result` (its
    ``to_dict()``, status from :func:`result_status`), a pydantic model, a DataFrame (one
    list per column), anything JSON-ready, ``None`` (204), or a response made with the
    low layer (passed through)."""
    if isinstance(value, Result):
        return json_response(result_body(value), result_status(value))
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(status_code=204)
    if isinstance(value, BaseModel):
        return json_response(value.model_dump(mode="json"))
    if isinstance(value, pd.DataFrame):
        return json_response({str(c): jsonable(value[c]) for c in value.columns})
    if isinstance(value, FlightError):
        return error_response(500, str(value))
    return json_response(value)
