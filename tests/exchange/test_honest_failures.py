"""Failures are charged only what the provider billed or what really arrived (API.md, "Usage and
budgets"), through every door and every network adapter (real SDKs against the local fakes)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from knox.models import AuthToken

from chat.models import Conversation
from chatlima.asgi import application
from tests.exchange.helpers import budget, holds, message, rows
from tests.exchange.test_http_doors import parse_sse

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = {"openai": "gpt-4o", "openrouter": "moonshotai/kimi-k2", "gemini": "gemini-2.5-flash"}


@database_sync_to_async
def token_for(user) -> str:
    return AuthToken.objects.create(user)[1]


async def through(door: str, user, body: dict) -> tuple[int, list[dict]]:
    """Send `body` through a door; the HTTP status (200 for a socket) and the events it gave
    (/send's one answer as a single event: its error, or a message_complete)."""
    token = await token_for(user)
    if door == "ws":
        ws = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[(b"origin", b"http://testserver")])
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "send_message", **body})
        events: list[dict] = []
        while not events or events[-1]["type"] not in ("message_complete", "error"):
            events.append(await ws.receive_json_from(timeout=10))
        await ws.disconnect()
        return 200, events
    headers = {"authorization": f"Bearer {token}"}
    path = "/api/v1/chat/stream" if door == "sse" else "/api/v1/chat/send"
    response = await AsyncClient().post(path, body, content_type="application/json", headers=headers)
    if door == "sse":
        return response.status_code, parse_sse(b"".join([part async for part in response.streaming_content]))
    data = response.json()
    if "error" in data:
        return response.status_code, [{"type": "error", **data["error"]}]
    return response.status_code, [{"type": "message_complete", **data["data"]}]


@pytest.fixture(params=["ws", "sse", "send"])
def door(request) -> str:
    return request.param


@pytest.fixture(params=["openai", "openrouter", "gemini"])
def upstream(request):
    return request.param, request.getfixturevalue(f"fake_{request.param}")


@database_sync_to_async
def conversation_totals(user) -> list[dict]:
    return [c.usage_dict() for c in Conversation.objects.filter(owner=user)]


async def assert_nothing_charged(user, row) -> None:
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (0, 0, 0)
    assert row.cost_estimate == Decimal("0") and row.actual_cost is None
    assert row.usage_source == "none"
    assert row.metadata["estimated_prompt_tokens"] > 0  # the estimate stays in metadata only
    [totals] = await conversation_totals(user)
    assert (totals["input_tokens"], totals["output_tokens"], totals["total_tokens"], totals["cost"]) == (
        0, 0, 0, "0.00000000")
    b = await budget(user)
    assert (b.tokens_used, b.tokens_held, b.cost_used) == (0, 0, Decimal("0"))
    assert await holds(user) == 0
    answer = await message(user, row.message.public_id if row.message else "")
    assert answer.figures_source == "none" and answer.user_message.prompt_tokens == 0


@database_sync_to_async
def with_message(row):
    row.message  # noqa: B018 - load it off the event loop
    return row


@pytest.mark.parametrize("status, code, http", [(500, "PROVIDER_ERROR", 502), (429, "RATE_LIMITED", 429),
                                                (400, "PROVIDER_ERROR", 502)])
async def test_a_call_that_fails_before_any_output_is_not_charged(owner, door, upstream, settings, status, code, http):
    name, fake = upstream
    settings.PROVIDER_MAX_RETRIES = 2
    fake.fail_next(status, retry_after=0, times=3)
    answered, events = await through(door, owner, {"message": "Hello?", "model": MODELS[name]})
    assert events[-1]["type"] == "error" and events[-1]["code"] == code
    assert answered == (http if door == "send" else 200)
    [row] = await rows(owner)
    assert row.status == ("rate_limited" if status == 429 else "error")
    # 4xx other than 429 is not retried; 429 and 5xx are, up to the retry budget.
    assert len(fake.requests) == (1 if status == 400 else 3)
    await assert_nothing_charged(owner, await with_message(row))


async def test_a_stream_that_breaks_off_ends_in_error_and_is_charged_what_arrived(owner, door, upstream):
    name, fake = upstream
    fake.script(deltas=["Half", " of", " an", " answer"])
    fake.end_after(2)  # the body ends cleanly: no finish reason, no usage, no [DONE]
    answered, events = await through(door, owner, {"message": "Tell me", "model": MODELS[name]})
    assert [e["type"] for e in events if e["type"] in ("message_complete", "error")] == ["error"]
    assert events[-1]["code"] == "PROVIDER_ERROR"
    assert answered == (502 if door == "send" else 200)
    [row] = await rows(owner)
    assert row.status == "error" and len(fake.requests) == 1
    answer = await message(owner, (await with_message(row)).message.public_id)
    assert answer.content == "Half of" and answer.status == "error"
    if name == "gemini":
        # Gemini's usage is cumulative on every chunk: what it had counted when the stream stopped.
        assert row.usage_source == "provider" and row.prompt_tokens == 9
    else:
        assert row.usage_source == "estimate" and row.completion_tokens > 0
    b = await budget(owner)
    assert b.tokens_used == row.total_tokens > 0 and await holds(owner) == 0
    [totals] = await conversation_totals(owner)
    assert totals["total_tokens"] == row.total_tokens


async def test_an_error_chunk_with_usage_is_charged_what_the_provider_billed(owner, door, fake_openrouter):
    fake_openrouter.script(deltas=[], reasoning=["We need", " to respond"], reasoning_key="reasoning",
                           usage={"prompt_tokens": 43, "completion_tokens": 10, "total_tokens": 53,
                                  "reasoning_tokens": 11, "cost": 0},
                           error_chunk={"code": 400, "message": "Token limit reached"})
    _, events = await through(door, owner, {"message": "Hi", "model": "moonshotai/kimi-k2"})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "PROVIDER_ERROR"
    assert len(fake_openrouter.requests) == 1  # reasoning had arrived: never sent again
    [row] = await rows(owner)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (43, 10, 53)
    assert row.usage_source == "provider" and row.actual_cost == Decimal("0")
    assert (await budget(owner)).tokens_used == 53
