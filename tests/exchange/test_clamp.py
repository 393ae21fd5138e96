"""Budgets that do not lock people out (issue 14): an answer the budget cannot cover in full goes
ahead with `max_tokens` lowered to what is left, through every door, down to the provider's request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat.providers.base import ChatRequest, Usage, estimate_prompt_tokens
from tests.exchange.helpers import rows
from tests.exchange.test_http_doors import bearer, stream
from tests.exchange.test_websocket import connect, until
from usage.models import Budget, BudgetReservation
from usage.pricing import cost_of

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = "Tell me about the budget, briefly."
DOORS = ["websocket", "sse", "send"]
# The provider's request as each fake received it: the answer's allowance.
SENT_MAX_TOKENS = {
    "gpt-4o": lambda request: request.body["max_tokens"],  # a compatible server (not api.openai.com)
    "gemini-2.5-flash": lambda request: request.body["generationConfig"]["maxOutputTokens"],
}


def prompt_of(model: str) -> int:
    return estimate_prompt_tokens(ChatRequest(model=model, message=MESSAGE))


@database_sync_to_async
def limit(user, tokens: int | None = None, cost: Decimal | None = None) -> None:
    Budget.objects.filter(user=user).update(token_limit=tokens, cost_limit=cost)


@database_sync_to_async
def reservations(user) -> list[BudgetReservation]:
    return list(BudgetReservation.objects.filter(user=user))


async def through(door: str, user, body: dict) -> tuple[int, dict, dict]:
    """Send through one door: (HTTP status, what it says of the answer's allowance, its last word).

    The allowance is stream_start's over the streaming doors and the answer's over /send; the last
    word is message_complete or the error (an HTTP error's `error` object).
    """
    if door == "websocket":
        ws = await connect(user)
        await ws.send_json_to({"type": "send_message", **body})
        events = await until(ws, {"message_complete", "error"})
        await ws.disconnect()
        start = next((e for e in events if e["type"] == "stream_start"), {})
        return 200, start, events[-1]
    if door == "sse":
        response, events = await stream(user, body)
        if not events:
            return response.status_code, {}, response.json()["error"]
        return response.status_code, next(e for e in events if e["type"] == "stream_start"), events[-1]
    response = await AsyncClient().post("/api/v1/chat/send", body, content_type="application/json",
                                        headers=await bearer(user))
    answer = response.json()
    if response.status_code != 200:
        return response.status_code, {}, answer["error"]
    return 200, answer["data"], {"type": "message_complete", **answer["data"]}


@pytest.fixture
def fakes(fake_openai, fake_gemini) -> dict:
    return {"gpt-4o": fake_openai, "gemini-2.5-flash": fake_gemini}


@pytest.mark.parametrize("model", list(SENT_MAX_TOKENS))
@pytest.mark.parametrize("door", DOORS)
async def test_each_door_lowers_max_tokens_to_what_the_budget_has_left(owner, fakes, door, model):
    prompt = prompt_of(model)
    await limit(owner, tokens=prompt + 500)
    status, start, last = await through(door, owner, {"message": MESSAGE, "model": model})
    assert status == 200 and last["type"] == "message_complete"
    assert (start["max_tokens"], start["max_tokens_clamped"]) == (500, True)
    # The provider was asked for the lowered allowance, and the hold was the prompt plus it.
    assert SENT_MAX_TOKENS[model](fakes[model].last_request()) == 500
    [hold] = await reservations(owner)
    assert (hold.tokens, hold.state) == (prompt + 500, "settled")
    [row] = await rows(owner)
    assert (row.metadata["max_tokens"], row.metadata["max_tokens_requested"]) == (500, 2048)


@pytest.mark.parametrize("door", DOORS)
async def test_each_door_refuses_below_the_least_answer_and_says_what_is_left(owner, fakes, door):
    prompt = prompt_of("gpt-4o")
    await limit(owner, tokens=prompt + 255)
    status, start, last = await through(door, owner, {"message": MESSAGE, "model": "gpt-4o",
                                                      "client_message_id": "msg_refused"})
    assert status == (200 if door == "websocket" else 403)  # a socket's refusal is an error frame
    assert last["code"] == "TOKEN_LIMIT_EXCEEDED" and start == {}
    details = last["details"]
    assert (details["tokens_left"], details["tokens_needed"], details["min_output_tokens"]) == (
        prompt + 255, prompt + 256, 256)
    assert f"{prompt + 255:,} tokens are left" in last["message"]
    assert fakes["gpt-4o"].requests == [] and await rows(owner) == [] and await reservations(owner) == []


@pytest.mark.parametrize("door", DOORS)
async def test_a_budget_with_room_sends_the_max_tokens_asked_for(owner, fakes, door):
    await limit(owner, tokens=100_000)
    status, start, last = await through(door, owner, {"message": MESSAGE, "model": "gemini-2.5-flash",
                                                      "max_tokens": 700})
    assert status == 200 and last["type"] == "message_complete"
    assert start["max_tokens"] == 700
    if door == "send":
        assert start["max_tokens_clamped"] is False  # /send always says
    else:
        assert "max_tokens_clamped" not in start
    assert SENT_MAX_TOKENS["gemini-2.5-flash"](fakes["gemini-2.5-flash"].last_request()) == 700


async def test_the_default_max_tokens_is_lowered_down_to_the_least_answer(owner, fakes, settings):
    settings.CHATLIMA_MIN_OUTPUT_TOKENS = 100
    prompt = prompt_of("gpt-4o")
    await limit(owner, tokens=prompt + 100)
    status, start, _ = await through("sse", owner, {"message": MESSAGE, "model": "gpt-4o"})
    assert status == 200 and start["max_tokens"] == 100
    await limit(owner, tokens=prompt + 99)
    status, _, last = await through("sse", owner, {"message": MESSAGE, "model": "gpt-4o"})
    assert status == 403 and last["details"]["min_output_tokens"] == 100


@pytest.mark.parametrize("door", DOORS)
async def test_a_cost_limit_lowers_max_tokens_at_the_models_price(owner, fakes, door):
    model = "gpt-4o"
    prompt = prompt_of(model)

    def cost(output: int) -> Decimal:
        return cost_of(model, Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output))

    room = await database_sync_to_async(cost)(700)
    assert room > await database_sync_to_async(cost)(699)  # the price tells 699 from 700 output tokens
    await limit(owner, cost=room)
    status, start, last = await through(door, owner, {"message": MESSAGE, "model": model})
    assert status == 200 and last["type"] == "message_complete"
    assert (start["max_tokens"], start["max_tokens_clamped"]) == (700, True)
    assert SENT_MAX_TOKENS[model](fakes[model].last_request()) == 700
    [hold] = await reservations(owner)
    assert (hold.tokens, hold.cost) == (prompt + 700, room)


async def test_a_replay_says_what_the_first_send_was_allowed(owner, fakes):
    prompt = prompt_of("gpt-4o")
    await limit(owner, tokens=prompt + 400)
    body = {"message": MESSAGE, "model": "gpt-4o", "client_message_id": "msg_again"}
    _, first, _ = await through("sse", owner, body)
    _, again, last = await through("send", owner, body)
    assert first["max_tokens"] == again["max_tokens"] == 400
    assert again["max_tokens_clamped"] is True and len(fakes["gpt-4o"].requests) == 1
    assert last["type"] == "message_complete"
    _, replayed, _ = await through("websocket", owner, body)
    assert (replayed["replayed"], replayed["max_tokens"], replayed["max_tokens_clamped"]) == (True, 400, True)

