"""Every door driving the real openai and google-genai SDKs against the local fake servers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from knox.models import AuthToken

from chat.providers.base import Usage
from chatlima.asgi import application
from tests.exchange.helpers import budget, holds, message, rows, run, types
from tests.exchange.test_http_doors import parse_sse
from usage.pricing import cost_of

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 400, "reasoning_tokens": 100}
GEMINI_USAGE = {"prompt": 900, "candidates": 300, "thoughts": 200, "cached": 100}


@database_sync_to_async
def token_for(user) -> str:
    return AuthToken.objects.create(user)[1]


def _script(name: str, fake) -> tuple[str, dict]:
    """Script a fake; returns the model to ask and the figures the exchange must store."""
    if name == "openai":
        fake.script(deltas=["Hel", "lo", " from", " OpenAI."], usage=OPENAI_USAGE, completion_id="chatcmpl-xyz")
        return "gpt-4o", {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                          "cached_tokens": 400, "reasoning_tokens": 100}
    fake.script(deltas=["Hel", "lo", " from", " Gemini."], usage=GEMINI_USAGE, response_id="resp-xyz")
    # completion_tokens includes reasoning (thinking) tokens for every provider.
    return "gemini-2.5-flash", {"prompt_tokens": 900, "completion_tokens": 500, "total_tokens": 1400,
                                "cached_tokens": 100, "reasoning_tokens": 200}


@pytest.fixture(params=["openai", "gemini"])
def provider(request):
    name = request.param
    fake = request.getfixturevalue(f"fake_{name}")
    model, expected = _script(name, fake)
    return name, fake, model, expected


async def _assert_stored(owner, events, fake, model, expected, completion_id):
    [row] = await rows(owner)
    assert len(fake.requests) == 1  # one provider call, one usage row
    assert row.status == "success" and row.usage_source == "provider"
    stored = {k: getattr(row, k) for k in expected}
    assert stored == expected
    usage = Usage(**expected, source="provider")
    assert row.cost_estimate == await database_sync_to_async(cost_of)(model, usage)
    assert row.cost_estimate > 0
    complete = events[-1]
    assert complete["type"] == "message_complete"
    assert complete["usage"] == expected
    assert Decimal(complete["cost"]["estimated"]) == row.cost_estimate
    answer = await message(owner, complete["message"]["id"])
    assert answer.content == "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")
    assert answer.completion_id == completion_id
    assert (answer.completion_tokens, answer.total_tokens, answer.reasoning_tokens, answer.cached_tokens) == (
        expected["completion_tokens"], expected["total_tokens"], expected["reasoning_tokens"], expected["cached_tokens"])
    assert answer.user_message.prompt_tokens == expected["prompt_tokens"]
    assert answer.cost == row.cost_estimate
    assert (await budget(owner)).tokens_used == expected["total_tokens"]
    assert await holds(owner) == 0


def _completion_id(name: str) -> str:
    return "chatcmpl-xyz" if name == "openai" else "resp-xyz"


async def test_websocket_door_stores_the_providers_figures(owner, provider):
    name, fake, model, expected = provider
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={await token_for(owner)}",
                               headers=[(b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "send_message", "message": "Hello", "model": model})
    events = []
    while not events or events[-1]["type"] not in ("message_complete", "error"):
        events.append(await ws.receive_json_from(timeout=10))
    names = types(events)
    assert names[:2] == ["message_saved", "stream_start"] and names[-2:] == ["stream_end", "message_complete"]
    await _assert_stored(owner, events, fake, model, expected, _completion_id(name))
    await ws.disconnect()


async def test_sse_door_stores_the_providers_figures(owner, provider):
    name, fake, model, expected = provider
    response = await AsyncClient().post(
        "/api/v1/chat/stream", {"message": "Hello", "model": model}, content_type="application/json",
        headers={"authorization": f"Bearer {await token_for(owner)}"})
    events = parse_sse(b"".join([part async for part in response.streaming_content]))
    assert types(events)[-2:] == ["stream_end", "message_complete"]
    await _assert_stored(owner, events, fake, model, expected, _completion_id(name))


async def test_send_door_stores_the_providers_figures(owner, provider):
    name, fake, model, expected = provider
    client = AsyncClient()
    headers = {"authorization": f"Bearer {await token_for(owner)}"}
    body = {"message": "Hello", "model": model, "client_message_id": "msg_sdk"}
    response = await client.post("/api/v1/chat/send", body, content_type="application/json", headers=headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["usage"] == expected and data["id"] == _completion_id(name) and data["model"] == model
    [row] = await rows(owner)
    assert Decimal(data["cost"]["estimated"]) == row.cost_estimate
    # A retry of the same client_message_id does not reach the provider again.
    again = await client.post("/api/v1/chat/send", body, content_type="application/json", headers=headers)
    assert again.json()["data"]["message_id"] == data["message_id"]
    assert len(fake.requests) == 1 and len(await rows(owner)) == 1


async def test_retries_before_the_first_delta_are_one_usage_row(owner, fake_openai):
    model, expected = _script("openai", fake_openai)
    fake_openai.fail_next(429, retry_after=0, times=2)
    events = await run(owner, {"message": "Hello", "model": model})
    assert events[-1]["type"] == "message_complete"
    [row] = await rows(owner)
    assert len(fake_openai.requests) == 3
    assert row.status == "success" and row.metadata["retries"] == 2
    assert row.total_tokens == expected["total_tokens"]


@pytest.mark.parametrize("status, code, row_status", [(429, "RATE_LIMITED", "rate_limited"),
                                                      (500, "PROVIDER_ERROR", "error")])
async def test_a_failing_provider_settles_with_its_status_and_releases_the_hold(
        owner, fake_gemini, settings, status, code, row_status):
    settings.PROVIDER_MAX_RETRIES = 1
    fake_gemini.fail_next(status, retry_after=0, times=5)
    events = await run(owner, {"message": "Hello", "model": "gemini-2.5-flash", "client_message_id": "msg_fail"})
    assert types(events) == ["message_saved", "stream_start", "error"]
    assert events[-1]["code"] == code
    [row] = await rows(owner)
    assert row.status == row_status and row.metadata["retries"] == 1
    assert len(fake_gemini.requests) == 2
    assert await holds(owner) == 0
    b = await budget(owner)
    assert b.tokens_held == 0 and b.tokens_used == row.total_tokens
    answer = await message(owner, events[1]["message_id"])
    assert answer.status == "error"


async def test_a_stream_that_breaks_off_keeps_the_partial_answer(owner, fake_openai, settings):
    settings.PROVIDER_MAX_RETRIES = 0
    _script("openai", fake_openai)
    fake_openai.disconnect_after(3)
    events = await run(owner, {"message": "Hello", "model": "gpt-4o"})
    assert events[-1]["type"] == "error"
    [row] = await rows(owner)
    assert row.status in ("error", "timeout") and row.usage_source == "estimate"
    answer = await message(owner, events[1]["message_id"])
    streamed = "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")
    assert answer.content == streamed and answer.completion_tokens == row.completion_tokens
    assert await holds(owner) == 0


async def test_cancelling_a_slow_sdk_stream_over_the_socket(owner, fake_gemini):
    _script("gemini", fake_gemini)
    fake_gemini.slow_stream(0.3)
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={await token_for(owner)}",
                               headers=[(b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "send_message", "message": "Hello", "model": "gemini-2.5-flash",
                           "client_message_id": "msg_slow"})
    events = []
    while not events or events[-1]["type"] != "stream_chunk":
        events.append(await ws.receive_json_from(timeout=10))
    await ws.send_json_to({"type": "cancel", "request_id": "msg_slow"})
    while events[-1]["type"] not in ("message_complete", "error"):
        events.append(await ws.receive_json_from(timeout=10))
    assert events[-1]["code"] == "CANCELLED"
    [row] = await rows(owner)
    assert row.status == "cancelled" and row.completion_tokens > 0
    assert await holds(owner) == 0
    await ws.disconnect()


async def test_a_provider_without_a_key_is_unavailable_through_every_door(owner, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "gemini": {"api_key": "", "base_url": None}}
    body = {"message": "Hello", "model": "gemini-2.5-flash"}
    client = AsyncClient()
    headers = {"authorization": f"Bearer {await token_for(owner)}"}
    for path in ("/api/v1/chat/send", "/api/v1/chat/stream"):
        response = await client.post(path, body, content_type="application/json", headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "MODEL_UNAVAILABLE"
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={await token_for(owner)}",
                               headers=[(b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_to(text_data=json.dumps({"type": "send_message", **body}))
    assert (await ws.receive_json_from())["code"] == "MODEL_UNAVAILABLE"
    await ws.disconnect()
    assert await rows(owner) == []
