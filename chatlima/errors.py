"""The contract's error codes, and how every door turns them into a response."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

HTTP_STATUS = {
    "INVALID_MESSAGE": 400,
    "UNAUTHENTICATED": 401,
    "CONVERSATION_NOT_FOUND": 404,
    "MODEL_UNAVAILABLE": 400,
    "TOKEN_LIMIT_EXCEEDED": 403,
    "RATE_LIMITED": 429,
    "PROVIDER_ERROR": 502,
    "TIMEOUT": 504,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "PAYLOAD_TOO_LARGE": 413,
}


class ClientError(Exception):
    """An error the client can act on, carrying one of the contract's codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def body_too_large() -> ClientError:
    """A body over CHATLIMA_MAX_BODY_BYTES (Django's DATA_UPLOAD_MAX_MEMORY_SIZE): chatlima.middleware
    refuses it before any view reads it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return ClientError("PAYLOAD_TOO_LARGE", f"The body is over {limit:,} bytes.", {"max_bytes": limit})


def error_response(err: ClientError) -> JsonResponse:
    return JsonResponse({"error": err.as_dict()}, status=err.http_status)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Give every DRF error the contract's body: {"error": {code, message, details}}."""
    if isinstance(exc, ClientError):
        return Response({"error": exc.as_dict()}, status=exc.http_status)
    if isinstance(exc, SuspiciousOperation):  # e.g. more form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response(error_body("INVALID_MESSAGE", str(exc) or "Bad request."), status=status.HTTP_400_BAD_REQUEST)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        code = "UNAUTHENTICATED"
    elif isinstance(exc, exceptions.Throttled):
        code = "RATE_LIMITED"
    elif isinstance(exc, exceptions.NotFound):
        code = "NOT_FOUND"
    elif isinstance(exc, exceptions.PermissionDenied):
        code = "PERMISSION_DENIED"
    elif response.status_code == status.HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        code = "PAYLOAD_TOO_LARGE"
    else:
        code = "INVALID_MESSAGE"
    data = response.data
    message = data.get("detail") if isinstance(data, dict) and "detail" in data else "Invalid request."
    details = {} if isinstance(data, dict) and set(data) == {"detail"} else data
    response.data = error_body(code, str(message), details if isinstance(details, dict) else {"errors": details})
    return response
