"""Query parameters read strictly, so that what the schema says of them is what the server does.

A parameter given twice, an empty one, or one outside its documented range is INVALID_MESSAGE
naming it; absent, it takes its default. (NUL characters never get this far: chatlima.middleware.)
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.request import Request

from chatlima.errors import ClientError

_INTEGER = re.compile(r"\A[+-]?[0-9]+\Z")  # int() alone would also take " 5" and "5_000"


def _invalid(name: str, message: str, reason: str) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {name: reason})


def query_param(request: Request, name: str) -> str | None:
    """The one value of `name`, or None when absent; given twice or empty, INVALID_MESSAGE."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise _invalid(name, f"`{name}` may be given once.", "repeated")
    if values[0] == "":
        raise _invalid(name, f"`{name}` is empty; leave it out instead.", "empty")
    return values[0]


def int_param(request: Request, name: str, default: Any, low: int, high: int) -> Any:
    """A whole number from `low` to `high` (the schema's minimum and maximum), else `default`."""
    raw = query_param(request, name)
    if raw is None:
        return default
    if not _INTEGER.match(raw):
        raise _invalid(name, f"`{name}` must be a whole number.", "not an integer")
    # A number of that many digits is out of every range here (and int() refuses past 4,300 digits).
    value = int(raw) if len(raw) <= 20 else None
    if value is None or not low <= value <= high:
        raise _invalid(name, f"`{name}` is between {low} and {high}.", "out of range")
    return value


def int_schema(low: int, high: int) -> dict[str, Any]:
    """The OpenAPI schema of an `int_param`."""
    return {"type": "integer", "minimum": low, "maximum": high}
