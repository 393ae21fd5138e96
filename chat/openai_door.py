"""The OpenAI-compatible door: `POST /v1/chat/completions` and `GET /v1/models` (API.md "The
OpenAI-compatible door"), so any tool that speaks OpenAI's API is metered by ChatLima.

A thin door like the others: it parses OpenAI's request, calls the one pipeline
(`start_exchange`, with the client's history as a `Supplied`, chat/exchange/supplied.py) and
frames its events as `chat.completion.chunk` server-sent events or one `chat.completion`.

* Authentication: a ChatLima API token as `Authorization: Bearer` (no session: tools are not
  browsers). The models are the catalogue's usable ones (`GET /api/v1/models`).
* The request: `messages` is the whole history; its last entry must be the user's message, the
  earlier user/assistant turns are the history the provider is asked with, system (and developer)
  messages are the system prompt. `temperature`, `max_tokens` / `max_completion_tokens`, `stream`,
  `stream_options.include_usage` and `user` are read; other fields are ignored.
* Each request is one exchange with one usage row. It is stored in the conversation the client's
  id maps to (the `X-ChatLima-Conversation` header, else OpenAI's `user`), one per id and user, or
  else in a conversation of its own titled "API: <token> · <first words>".
* `usage` has OpenAI's figures (`prompt_tokens_details.cached_tokens`,
  `completion_tokens_details.reasoning_tokens`) plus `cost` (the contract's cost object); the
  answer also carries `chatlima` (request, conversation and message ids).
* Errors are OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with the contract's
  statuses: 400, 401, 403 (the budget), 404 (an unknown model), 429, 502, 504. An exchange that fails
  before its first word answers with that status even when streaming; one that fails later ends
  its stream with an `error` event (which OpenAI's SDKs raise).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework import exceptions

from accounts.authentication import BearerTokenAuthentication
from accounts.models import ApiToken, User
from accounts.tokens import named_token
from chat.exchange import start_exchange
from chat.exchange.supplied import Supplied, Via, api_conversation_id
from chat.models import Conversation
from chat.openai_request import parse_request, refuse
from chatlima.db import run_db
from chatlima.errors import HTTP_STATUS, ClientError
from usage.models import ApiUsageLog
from usage.queries import catalogue_models

DOOR = "openai"
CONVERSATION_HEADER = "HTTP_X_CHATLIMA_CONVERSATION"
CLIENT_KEY_CHARS = 256
TITLE_WORDS = 6
# The contract's codes as OpenAI's error `type` and `code`; the status stays the contract's, except
# an unknown model, which OpenAI answers 404.
OPENAI_ERRORS = {
    "INVALID_MESSAGE": ("invalid_request_error", "invalid_request"),
    "UNAUTHENTICATED": ("authentication_error", "invalid_api_key"),
    "MODEL_UNAVAILABLE": ("invalid_request_error", "model_not_found"),
    "CONVERSATION_NOT_FOUND": ("invalid_request_error", "conversation_not_found"),
    "TOKEN_LIMIT_EXCEEDED": ("insufficient_quota", "budget_exceeded"),
    "PERMISSION_DENIED": ("permission_error", "permission_denied"),
    "RATE_LIMITED": ("rate_limit_error", "rate_limited"),
    "PROVIDER_ERROR": ("api_error", "upstream_error"),
    "TIMEOUT": ("api_error", "upstream_timeout"),
    "CANCELLED": ("api_error", "cancelled"),
    "PAYLOAD_TOO_LARGE": ("invalid_request_error", "payload_too_large"),
    "SERVICE_UNAVAILABLE": ("api_error", "service_unavailable"),
}
STATUS = {**HTTP_STATUS, "MODEL_UNAVAILABLE": 404, "SERVICE_UNAVAILABLE": 503, "CANCELLED": 499}


def openai_error(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    kind, openai_code = OPENAI_ERRORS.get(code, ("api_error", code.lower()))
    return {"error": {"message": message, "type": kind, "param": param, "code": openai_code}}


def error_response(code: str, message: str, param: str | None = None) -> JsonResponse:
    response = JsonResponse(openai_error(code, message, param), status=STATUS.get(code, 400))
    if code == "UNAUTHENTICATED":
        response["WWW-Authenticate"] = "Bearer"
    return response


def _client_error_response(err: ClientError) -> JsonResponse:
    param = err.details.get("field") if isinstance(err.details, dict) else None
    if err.code == "MODEL_UNAVAILABLE":
        param = "model"
    return error_response(err.code, err.message, param)


def _authenticate(request: HttpRequest) -> tuple[User, ApiToken]:
    """The Bearer token's user and named token; ClientError UNAUTHENTICATED without a good one."""
    try:
        result = BearerTokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        raise ClientError("UNAUTHENTICATED", str(exc.detail)) from exc
    if result is None:
        raise ClientError("UNAUTHENTICATED", "Send a ChatLima API token as 'Authorization: Bearer <token>'.")
    user, auth_token = result
    return user, named_token(auth_token)


# --- the conversation ------------------------------------------------------------------------


def _title(token: ApiToken, message: str) -> str:
    words = " ".join(message.split()[:TITLE_WORDS])
    return f"API: {token.label} · {words}"[:120]


def _conversation_for(user, client_key: str) -> str | None:
    """The public id of this user's conversation for a client's key, when it exists (and is not deleted)."""
    public_id = api_conversation_id(client_key)
    found = Conversation.objects.for_user(user).filter(public_id=public_id).exists()
    return public_id if found else None


async def _supplied(request: HttpRequest, user, token, parsed: dict) -> tuple[dict, Supplied]:
    """The pipeline's send body and `Supplied`: into the client's conversation, or a new one."""
    client_key = (request.META.get(CONVERSATION_HEADER) or parsed["user"]).strip()[:CLIENT_KEY_CHARS]
    send = {key: value for key, value in parsed["send"].items() if value is not None}
    new_id = None
    if client_key:
        existing = await run_db(_conversation_for, user, client_key)
        if existing is not None:
            send["conversation_id"] = existing
        else:
            new_id = api_conversation_id(client_key)
    if "conversation_id" not in send and parsed["system"]:
        send["system_prompt"] = parsed["system"][:32_000]
    supplied = Supplied(history=parsed["history"], system_prompt=parsed["system"],
                        title=_title(token, parsed["send"]["message"]), new_conversation_id=new_id)
    return send, supplied


async def _start(request: HttpRequest, user, token: ApiToken, parsed: dict):
    send, supplied = await _supplied(request, user, token, parsed)
    via = Via(DOOR, token)
    try:
        return await start_exchange(user, send, supplied, via)
    except IntegrityError:
        # Two first requests of one client id at once: the other created its conversation; join it.
        if supplied.new_conversation_id is None:
            raise
    send, supplied = await _supplied(request, user, token, parsed)
    return await start_exchange(user, send, supplied, via)


# --- the answer --------------------------------------------------------------------------------


def openai_usage(usage: dict, cost: dict | None) -> dict[str, Any]:
    """The contract's usage figures in OpenAI's names, plus the contract's `cost`."""
    figures = {
        "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
        "completion_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
    }
    if cost is not None:
        figures["cost"] = cost
    return figures


def _finish_reason(user_id: int, request_id: str) -> str:
    reason = (ApiUsageLog.objects.filter(user_id=user_id, request_id=request_id)
              .values_list("metadata__finish_reason", flat=True).first())
    return "length" if reason in ("length", "max_tokens", "MAX_TOKENS") else "stop"


class Framer:
    """One exchange's events as OpenAI's objects."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.created = int(time.time())
        self.id = "chatcmpl-pending"
        self.chatlima: dict[str, Any] = {}

    def note(self, event: dict) -> None:
        if event["type"] == "message_saved":
            self.id = f"chatcmpl-{event['request_id']}"
            self.chatlima = {"request_id": event["request_id"], "conversation_id": event["conversation_id"]}
        elif event["type"] == "stream_start":
            self.chatlima["message_id"] = event.get("message_id")
            self.model = event["model"]

    def chunk(self, delta: dict | None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]
        data = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices}
        if usage is not None:
            data["usage"] = usage
            data["chatlima"] = self.chatlima
        return data

    def completion(self, text: str, finish_reason: str, usage: dict) -> dict:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage, "chatlima": self.chatlima}


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


async def _until_first_word(events: AsyncIterator[dict], framer: Framer) -> list[dict]:
    """Events up to the first answer chunk or the end: an exchange refused by its provider before
    any word answers with its status, not a 200 stream."""
    seen: list[dict] = []
    async for event in events:
        framer.note(event)
        if event["type"] in ("message_saved", "stream_start"):
            continue
        seen.append(event)
        if event["type"] in ("stream_chunk", "error", "message_complete"):
            break
    return seen


def _error_of(event: dict) -> tuple[str, str]:
    return event.get("code", "PROVIDER_ERROR"), event.get("message", "The exchange failed.")


async def _stream(user, events, framer: Framer, first: list[dict], include_usage: bool) -> AsyncIterator[bytes]:
    # A client that goes away cancels this generator; closing the pipeline's settles as cancelled.
    try:
        yield sse(framer.chunk({"role": "assistant", "content": ""}))
        pending = list(first)
        while True:
            if pending:
                event = pending.pop(0)
            else:
                event = await anext(events, None)
                if event is None:
                    break
            if event["type"] == "stream_chunk":
                yield sse(framer.chunk({"content": event["chunk"]}))
            elif event["type"] == "error":
                code, message = _error_of(event)
                yield sse(openai_error(code, message))
                break
            elif event["type"] == "message_complete":
                reason = await run_db(_finish_reason, user.pk, event["request_id"])
                yield sse(framer.chunk({}, reason))
                if include_usage:
                    yield sse(framer.chunk(None, usage=openai_usage(event["usage"], event["cost"])))
        yield sse("[DONE]")
    finally:
        await events.aclose()


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponse:
    try:
        user, token = await run_db(_authenticate, request)
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise refuse("The body must be JSON.", None) from exc
        parsed = parse_request(body)
        exchange = await _start(request, user, token, parsed)
    except ClientError as err:
        return _client_error_response(err)
    framer = Framer(parsed["send"]["model"])
    events = exchange.events()
    handed_on = False
    try:
        first = await _until_first_word(events, framer)
        failed = next((e for e in first if e["type"] == "error"), None)
        if failed is not None:
            return error_response(*_error_of(failed))
        if parsed["stream"]:
            response = StreamingHttpResponse(_stream(user, events, framer, first, parsed["include_usage"]),
                                             content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
            handed_on = True
            return response
        parts: list[str] = []
        complete = None
        pending = list(first)
        while True:
            event = pending.pop(0) if pending else await anext(events, None)
            if event is None:
                break
            if event["type"] == "stream_chunk":
                parts.append(event["chunk"])
            elif event["type"] == "error":
                return error_response(*_error_of(event))
            elif event["type"] == "message_complete":
                complete = event
        if complete is None:
            return error_response("PROVIDER_ERROR", "The exchange ended without an answer.")
        reason = await run_db(_finish_reason, user.pk, complete["request_id"])
        text = (complete["message"] or {}).get("content", "".join(parts))
        return JsonResponse(framer.completion(text, reason, openai_usage(complete["usage"], complete["cost"])))
    finally:
        if not handed_on:
            await events.aclose()


def usable_models() -> list[dict[str, Any]]:
    """The catalogue's usable models in OpenAI's list entries."""
    return [{"id": m.model_id, "object": "model", "created": 0, "owned_by": m.provider, "name": m.display_name}
            for m in catalogue_models() if m.is_available]


@require_GET
async def models(request: HttpRequest) -> HttpResponse:
    try:
        await run_db(_authenticate, request)
    except ClientError as err:
        return _client_error_response(err)
    return JsonResponse({"object": "list", "data": await run_db(usable_models)})
