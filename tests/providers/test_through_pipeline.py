"""Each network adapter, through its real SDK and the fake server, behind the exchange pipeline:
what the provider reported is what gets stored and priced."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from chat.exchange import start_exchange
from chat.models import Message
from usage.models import ApiUsageLog, ModelPrice

pytestmark = pytest.mark.django_db(transaction=True)


async def run(user, body: dict) -> list[dict]:
    exchange = await start_exchange(user, body)
    return [event async for event in exchange.events()]


@database_sync_to_async
def only_row(user) -> ApiUsageLog:
    [row] = ApiUsageLog.objects.filter(user=user)
    return row


@database_sync_to_async
def answer_of(row: ApiUsageLog) -> Message:
    return Message.objects.get(pk=row.message_id)


async def test_gemini_thinking_tokens_are_stored_and_priced_as_output(owner, fake_gemini):
    fake_gemini.script(deltas=["Hi", " there"], usage={"prompt": 1000, "candidates": 200, "thoughts": 300, "cached": 200})
    events = await run(owner, {"message": "hello", "model": "gemini-2.5-flash"})
    complete = events[-1]
    assert complete["type"] == "message_complete"
    assert complete["usage"] == {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                                 "cached_tokens": 200, "reasoning_tokens": 300}
    assert complete["cost"]["estimated"] == "0.00149600"
    row = await only_row(owner)
    assert row.status == "success" and row.usage_source == "provider"
    assert row.cost_estimate == Decimal("0.00149600") and row.actual_cost is None


async def test_openrouter_billed_cost_is_stored_as_actual_cost(owner, fake_openrouter):
    await database_sync_to_async(ModelPrice.objects.create)(
        provider="openrouter", model_id="moonshotai/kimi-k2", display_name="Kimi K2", effective_date=date(2025, 1, 1),
        input_per_mtok=Decimal("0.60"), output_per_mtok=Decimal("2.50"))
    fake_openrouter.script(deltas=["Hi"], usage={"prompt_tokens": 10, "completion_tokens": 2, "cost": "0.0000123"})
    events = await run(owner, {"message": "hello", "model": "moonshotai/kimi-k2"})
    assert events[-1]["cost"]["actual"] == "0.00001230"
    # The administrator's list price: 10 * 0.60 + 2 * 2.50 = 11 per million.
    assert events[-1]["cost"]["estimated"] == "0.00001100"
    row = await only_row(owner)
    assert row.actual_cost == Decimal("0.0000123") and row.usage_source == "provider"
    assert fake_openrouter.last_request().body["usage"] == {"include": True}


async def test_openai_stream_cut_mid_answer_keeps_the_text_with_estimated_figures(owner, fake_openai):
    fake_openai.disconnect_after(2)
    events = await run(owner, {"message": "hello", "model": "gpt-4o"})
    assert "error" in [e["type"] for e in events]
    row = await only_row(owner)
    assert row.status == "error" and row.usage_source == "estimate"
    assert row.completion_tokens > 0
    assert (await answer_of(row)).content == "Hello from"
