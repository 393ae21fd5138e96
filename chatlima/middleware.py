"""Bad input refused before any view runs, with the contract's JSON error body.

One place for what every door would otherwise have to repeat (API.md "Error codes"):

* a body over `DATA_UPLOAD_MAX_MEMORY_SIZE` (`CHATLIMA_MAX_BODY_BYTES`): 413 `PAYLOAD_TOO_LARGE`;
* a body nested deeper than `MAX_JSON_DEPTH`: 400 `INVALID_MESSAGE`, before a parser recurses into it
  (Python's `json` raises RecursionError near 1,000 levels). Every body but multipart is checked,
  since the exchange doors read JSON whatever the Content-Type says;
* a NUL character in the path or the query string: 400 `INVALID_MESSAGE` (PostgreSQL cannot
  compare text with NUL, so a lookup would fail with a 500).

And under /api/, a 4xx answer that is not JSON (Django's HTML 404 for an unknown path, its bare
400 for a suspicious request, a 405 from `require_POST`) is given the contract's body.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

from chatlima.errors import body_too_large, error_body, error_response

MAX_JSON_DEPTH = 64
API_PREFIX = "/api/"

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
# Openers become 2 and closers 0, so that a step minus 1 is +1 or -1 (see json_too_deep).
_AS_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_CODE_FOR_STATUS = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE",
                    429: "RATE_LIMITED"}


def _brackets_outside_strings(body: bytes) -> bytes:
    """The brackets of `body` that are structure: those inside a string literal are text.

    Escapes pair up left to right as a parser reads them: `\\\\` first, then `\\"`; every quote left
    opens or closes a string. Done with bytes.replace, translate and split, which run in C.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(body.translate(None, _NOT_STRUCTURE).split(b'"')[::2])


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of `body` nest deeper than `limit`, found without parsing it
    (so without recursion) in a few passes over it done in C.

    Exact for valid JSON. For anything else it is at least as deep as a parser gets before failing
    (unclosed brackets count; a parser stops at the first stray closer), so no parser recurses past
    `limit` on a body this lets through.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    steps = _brackets_outside_strings(body).translate(_AS_STEPS)
    # The running sum of (step - 1) is +1 per opener, -1 per closer: the depth at each bracket.
    depths = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return max(depths, default=0) > limit


def _refusal(code: str, message: str, status: int, details: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def refuse_bad_input(request: HttpRequest) -> HttpResponse | None:
    """The refusal for a request no view should see, or None. Reads the body unless it is multipart."""
    if "\x00" in request.path:
        return _refusal("INVALID_MESSAGE", "The path must not contain NUL characters.", 400, {"field": "path"})
    try:
        query = request.GET.lists()
    except SuspiciousOperation as exc:  # more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS
        return _refusal("INVALID_MESSAGE", str(exc), 400, {"field": "query"})
    for name, values in query:
        if "\x00" in name or any("\x00" in value for value in values):
            return _refusal("INVALID_MESSAGE", "Query parameters must not contain NUL characters.", 400,
                            {"field": name.replace("\x00", "\\x00")})
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _refusal("INVALID_MESSAGE", "Content-Length must be a number.", 400, {"field": "Content-Length"})
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return error_response(body_too_large())
    if request.content_type.startswith("multipart/"):
        return None  # file uploads stream to their parser; Django limits their other fields
    try:
        body = request.body  # Django reads at most the limit + 1 bytes, Content-Length or not
    except RequestDataTooBig:
        return error_response(body_too_large())
    if json_too_deep(body):
        return _refusal("INVALID_MESSAGE", f"JSON may nest at most {MAX_JSON_DEPTH} levels deep.", 400,
                        {"field": "body", "max_depth": MAX_JSON_DEPTH})
    return None


def _as_contract_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An API error answer that is not JSON, given the contract's body with the same status."""
    if (
        not 400 <= response.status_code < 500
        or not request.path.startswith(API_PREFIX)
        or response.streaming
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    status = response.status_code
    code = _CODE_FOR_STATUS.get(status, "INVALID_MESSAGE")
    message = response.reason_phrase or "The request failed."
    replacement = _refusal(code, f"{message}.", status)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if header in response:
            replacement[header] = response[header]
    return replacement


class BadInputMiddleware:
    """Refuses bad input with the contract's JSON (see the module docstring). Sync and async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        refusal = refuse_bad_input(request)
        if refusal is not None:
            return refusal
        return _as_contract_error(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        refusal = refuse_bad_input(request)
        if refusal is not None:
            return refusal
        return _as_contract_error(request, await self.get_response(request))
