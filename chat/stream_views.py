"""The HTTP doors: `POST /api/v1/chat/stream` (SSE) and `POST /api/v1/chat/send` (one JSON answer).

Plain async Django views (DRF's views are sync): Bearer token or session + CSRF, checked here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from importlib import import_module
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import exceptions

from accounts.authentication import BearerTokenAuthentication
from accounts.tokens import named_token
from chat.exchange import Exchange, Replay, parse_send_body, prepare_exchange, prepared_exchange
from chat.exchange.supplied import Via
from chat.payloads import iso
from chatlima.db import ServiceUnavailable, service_unavailable_response
from chatlima.errors import HTTP_STATUS, ClientError, error_response


def _bearer_user(request: HttpRequest):
    """The Bearer token's user, None when there is no Bearer header; raises on a bad token."""
    result = BearerTokenAuthentication().authenticate(request)
    if result is None:
        return None
    request.chatlima_api_token = named_token(result[1])  # for the exchange's `Via`
    return result[0]


def _session_user(request: HttpRequest):
    """The browser session's user. The doors run without SessionMiddleware (chatlima/doors.py), so
    the session is opened here, read only: nothing the doors do writes to it."""
    from django.contrib.auth import get_user

    if not hasattr(request, "session"):
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return get_user(request)


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def _user(request: HttpRequest):
    """Bearer first (API and mobile), else the browser session with its CSRF token; raises ClientError."""
    try:
        user = _bearer_user(request)
    except exceptions.AuthenticationFailed as exc:
        raise ClientError("UNAUTHENTICATED", str(exc.detail)) from exc
    if user is not None:
        return user
    user = _session_user(request)
    if not user.is_authenticated:
        raise ClientError("UNAUTHENTICATED", "Authentication credentials were not provided.")
    if _csrf_refusal(request) is not None:
        raise ClientError("PERMISSION_DENIED", "CSRF check failed for this session request.", {"reason": "csrf"})
    return user


async def _open(request: HttpRequest, door: str) -> Exchange | Replay:
    """The credentials, the body and the preparing in one database hop (`prepared_exchange`) on a
    thread of the pool: not channels' one thread-sensitive thread, and not two hops, each queued
    behind every other request's in a burst."""

    def check_and_prepare():
        user = _user(request)
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise ClientError("INVALID_MESSAGE", "The body must be JSON.", {"field": "body"}) from exc
        via = Via(door, getattr(request, "chatlima_api_token", None))
        return user, prepare_exchange(user, parse_send_body(body), None, via)

    return await prepared_exchange(check_and_prepare)


def _refusal(err: ClientError) -> HttpResponse:
    # A 503 for want of a database connection says when to come back (Retry-After), as for every view.
    return service_unavailable_response(err) if isinstance(err, ServiceUnavailable) else error_response(err)


def sse_frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _sse(exchange: Exchange | Replay) -> AsyncIterator[bytes]:
    # A client that goes away cancels this generator; closing the pipeline's generator settles as cancelled.
    async with aclosing(exchange.events()) as events:
        async for event in events:
            yield sse_frame(event)


@csrf_exempt
@require_POST
async def chat_stream(request: HttpRequest) -> HttpResponse:
    try:
        exchange = await _open(request, "sse")
    except ClientError as err:
        return _refusal(err)
    response = StreamingHttpResponse(_sse(exchange), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@csrf_exempt
@require_POST
async def chat_send(request: HttpRequest) -> HttpResponse:
    try:
        exchange = await _open(request, "send")
    except ClientError as err:
        return _refusal(err)
    saved = start = complete = error = None
    async with aclosing(exchange.events()) as events:
        async for event in events:
            if event["type"] == "message_saved":
                saved = event
            elif event["type"] == "stream_start":
                start = event
            elif event["type"] == "message_complete":
                complete = event
            elif event["type"] == "error":
                error = event
    if complete is None:
        code = (error or {}).get("code", "PROVIDER_ERROR")
        body = {"error": {"code": code, "message": (error or {}).get("message", "The exchange failed."),
                          "details": (error or {}).get("details", {})}}
        return JsonResponse(body, status=HTTP_STATUS.get(code, 502))
    message = complete["message"] or {}
    now = iso(timezone.now())
    data = {
        "response": message.get("content", ""),
        "usage": complete["usage"],
        "cost": complete["cost"],
        "timestamp": message.get("timestamp") or now,
        "elapsed_time": message.get("elapsed_time"),
        "contentType": message.get("contentType", "markdown"),
        "id": message.get("completion_id", ""),
        "request_id": complete["request_id"],
        "message_id": message.get("id"),
        "conversation_id": saved["conversation_id"] if saved else None,
        "model": message.get("model"),
        "user_message": complete["user_message"],
        "conversation_usage": complete["conversation_usage"],
        "budget": complete["budget"],
        # An extension (README): the answer's allowance, as stream_start says it.
        "max_tokens": start["max_tokens"] if start else None,
        "max_tokens_clamped": bool(start and start.get("max_tokens_clamped")),
    }
    return JsonResponse({"data": data, "timestamp": now})
