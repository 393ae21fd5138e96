"""The HTTP doors: POST /api/v1/chat/stream (SSE) and POST /api/v1/chat/send."""

from __future__ import annotations

import json

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.middleware.csrf import _get_new_csrf_string
from django.test import AsyncClient
from knox.models import AuthToken

from chatlima.asgi import application
from tests.exchange.helpers import budget, holds, message, rows, set_limit, types

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def bearer(user) -> dict[str, str]:
    return {"authorization": f"Bearer {AuthToken.objects.create(user)[1]}"}


def parse_sse(raw: bytes) -> list[dict]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        event = json.loads(lines["data"])
        assert event["type"] == lines["event"]
        events.append(event)
    return events


async def stream(user, body) -> tuple[object, list[dict]]:
    client = AsyncClient()
    response = await client.post("/api/v1/chat/stream", body, content_type="application/json",
                                 headers=await bearer(user))
    if not response.streaming:
        return response, []
    raw = b"".join([part async for part in response.streaming_content])
    return response, parse_sse(raw)


async def test_sse_streams_the_events_in_order_with_stored_figures(owner):
    response, events = await stream(owner, {"message": "Hello SSE", "client_message_id": "msg_sse"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["X-Accel-Buffering"] == "no" and response["Cache-Control"] == "no-cache"
    names = types(events)
    assert names[:2] == ["message_saved", "stream_start"] and names[-2:] == ["stream_end", "message_complete"]
    [row] = await rows(owner)
    assert events[-1]["usage"]["total_tokens"] == row.total_tokens
    answer = await message(owner, events[-1]["message"]["id"])
    assert answer.content == "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")


@pytest.mark.parametrize("body, status, code", [
    ({"message": ""}, 400, "INVALID_MESSAGE"),
    ({"message": "hi", "model": "nope"}, 400, "MODEL_UNAVAILABLE"),
    ({"message": "hi", "conversation_id": "conv_missing"}, 404, "CONVERSATION_NOT_FOUND"),
])
async def test_sse_errors_before_the_stream_are_json_with_their_status(owner, body, status, code):
    response, _ = await stream(owner, body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_sse_budget_refusal_is_a_403(owner):
    await set_limit(owner, 3)
    response, _ = await stream(owner, {"message": "hi"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "TOKEN_LIMIT_EXCEEDED"
    assert await rows(owner) == []


async def test_the_http_doors_need_credentials(db):
    client = AsyncClient()
    for path in ("/api/v1/chat/stream", "/api/v1/chat/send"):
        response = await client.post(path, {"message": "hi"}, content_type="application/json")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        bad = await client.post(path, {"message": "hi"}, content_type="application/json",
                                headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401


async def test_a_session_needs_its_csrf_token(owner):
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(owner)
    refused = await client.post("/api/v1/chat/send", {"message": "hi"}, content_type="application/json")
    assert refused.status_code == 403
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    ok = await client.post("/api/v1/chat/send", {"message": "hi"}, content_type="application/json",
                           headers={"x-csrftoken": secret})
    assert ok.status_code == 200, ok.content


async def test_send_answers_in_the_seed_000_shape(owner):
    client = AsyncClient()
    body = {
        "message": "How many international airport in Japan?",
        "messages": [{"id": "msg_1753195195759_ei5l6ns9o", "content": "How many international airport in Japan?",
                      "role": "user", "timestamp": "2025-07-22T14:39:55.759Z"}],
        "model": "offline-demo",
    }
    response = await client.post("/api/v1/chat/send", body, content_type="application/json",
                                 headers=await bearer(owner))
    assert response.status_code == 200
    payload = response.json()
    data = payload["data"]
    assert {"response", "usage", "cost", "timestamp", "elapsed_time", "contentType", "id", "request_id",
            "message_id", "conversation_id", "model"} <= set(data)
    assert payload["timestamp"].endswith("Z")
    assert data["request_id"] == "msg_1753195195759_ei5l6ns9o"
    [row] = await rows(owner)
    assert data["usage"] == {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                             "total_tokens": row.total_tokens, "cached_tokens": row.cached_tokens,
                             "reasoning_tokens": row.reasoning_tokens}
    assert data["cost"]["currency"] == "USD"
    answer = await message(owner, data["message_id"])
    assert answer.content == data["response"] and answer.user_message.public_id == data["request_id"]
    assert data["id"] == answer.completion_id
    # The retry gets the same answer and no second provider call.
    again = await client.post("/api/v1/chat/send", body, content_type="application/json",
                              headers=await bearer(owner))
    assert again.json()["data"]["message_id"] == data["message_id"]
    assert len(await rows(owner)) == 1


async def test_send_to_another_users_conversation_is_not_found(owner, stranger):
    client = AsyncClient()
    theirs = await client.post("/api/v1/chat/send", {"message": "mine"}, content_type="application/json",
                               headers=await bearer(stranger))
    conversation_id = theirs.json()["data"]["conversation_id"]
    for path in ("/api/v1/chat/send", "/api/v1/chat/stream"):
        response = await client.post(path, {"message": "yours?", "conversation_id": conversation_id},
                                     content_type="application/json", headers=await bearer(owner))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"
    assert await rows(owner) == []


async def test_sse_client_disconnect_cancels_and_keeps_the_partial_answer(owner, paced):
    headers = await bearer(owner)
    body = json.dumps({"message": "A long one", "client_message_id": "msg_gone"}).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/v1/chat/stream", "raw_path": b"/api/v1/chat/stream",
        "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"authorization", headers["authorization"].encode())],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await app.receive_output(timeout=10)
    assert start["type"] == "http.response.start" and start["status"] == 200
    received = b""
    while b"stream_chunk" not in received:
        received += (await app.receive_output(timeout=10)).get("body", b"")
    await app.send_input({"type": "http.disconnect"})
    # The handler cancels the response, and the pipeline settles before the handler returns.
    await app.wait(timeout=10)
    [row] = await rows(owner)
    assert row.status == "cancelled" and row.completion_tokens > 0
    assert await holds(owner) == 0
    assert (await budget(owner)).tokens_used == row.total_tokens
    answer = await message(owner, "msg_gone")
    assert answer.prompt_tokens == row.prompt_tokens
