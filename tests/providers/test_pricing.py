"""Costs in Decimal from the seeded price table, checked against figures worked out by hand."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

import pytest

from chat.providers.base import Usage
from usage.models import ModelPrice
from usage.pricing import cost_of, price_payload

pytestmark = pytest.mark.django_db


def usage(prompt=0, completion=0, cached=0, reasoning=0) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 cached_tokens=cached, reasoning_tokens=reasoning)


def test_gemini_cached_and_reasoning_tokens_each_at_their_price():
    # gemini-2.5-flash: input 0.30, cached 0.03, output 2.50, reasoning 2.50 per Mtok.
    # 800 uncached * 0.30 = 240; 200 cached * 0.03 = 6; 200 answer * 2.50 = 500; 300 reasoning * 2.50 = 750
    # (240 + 6 + 500 + 750) / 1e6 = 0.001496
    cost = cost_of("gemini-2.5-flash", usage(prompt=1000, cached=200, completion=500, reasoning=300))
    assert cost == Decimal("0.00149600")
    assert isinstance(cost, Decimal)


def test_reasoning_price_differs_from_output_price():
    ModelPrice.objects.create(provider="openai", model_id="think-1", display_name="Think", context_window=1,
                              input_per_mtok=Decimal("1"), output_per_mtok=Decimal("4"),
                              cached_input_per_mtok=Decimal("0.5"), reasoning_per_mtok=Decimal("8"),
                              effective_date=date(2025, 1, 1))
    # 900*1 + 100*0.5 + 400*4 + 600*8 = 900 + 50 + 1600 + 4800 = 7350 -> 0.00735
    assert cost_of("think-1", usage(prompt=1000, cached=100, completion=1000, reasoning=600)) == Decimal("0.00735000")


def test_without_reasoning_price_reasoning_is_output():
    # gpt-4o: input 2.50, cached 1.25, output 10.00, no reasoning price.
    # 600*2.50 + 400*1.25 + 500*10 = 1500 + 500 + 5000 = 7000 -> 0.007
    assert cost_of("gpt-4o", usage(prompt=1000, cached=400, completion=500, reasoning=100)) == Decimal("0.00700000")


def test_without_cached_price_cached_input_is_input_price():
    # deepseek v3: input 0.27, output 1.10, no cached price: 1000*0.27 + 100*1.10 = 380 -> 0.00038
    cost = cost_of("deepseek/deepseek-chat-v3-0324", usage(prompt=1000, cached=500, completion=100))
    assert cost == Decimal("0.00038000")


def test_rounds_half_up_to_eight_places():
    # gemini-2.5-pro cached 0.125/Mtok: one cached token = 0.000000125, a tie; half-up gives ...13
    # (banker's rounding would give ...12).
    assert cost_of("gemini-2.5-pro", usage(prompt=1, cached=1)) == Decimal("0.00000013")


def test_price_in_force_on_the_day_is_used():
    ModelPrice.objects.create(provider="openai", model_id="gpt-4o", display_name="GPT-4o", context_window=1,
                              input_per_mtok=Decimal("5"), output_per_mtok=Decimal("20"),
                              effective_date=date(2026, 1, 1))
    figures = usage(prompt=1000, completion=1000)
    assert cost_of("gpt-4o", figures, on=date(2025, 12, 31)) == Decimal("0.01250000")  # 2500 + 10000
    assert cost_of("gpt-4o", figures, on=date(2026, 1, 2)) == Decimal("0.02500000")  # 5000 + 20000


def test_unknown_model_costs_none_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="usage.pricing"):
        assert cost_of("gpt-4o-mini-nonexistent", usage(prompt=10, completion=10)) is None
    assert "gpt-4o-mini-nonexistent" in caplog.text


def test_offline_model_is_free():
    assert cost_of("offline-demo", usage(prompt=123, completion=456)) == Decimal("0E-8")


def test_price_payload_matches_the_contract():
    price = ModelPrice.objects.for_model("gemini-2.5-flash")
    assert price_payload(price) == {
        "currency": "USD", "input_per_mtok": "0.30", "output_per_mtok": "2.50",
        "cached_input_per_mtok": "0.03", "reasoning_per_mtok": "2.50",
        "effective_date": price.effective_date.isoformat(),
    }
    openrouter = price_payload(ModelPrice.objects.for_model("deepseek/deepseek-chat-v3-0324"))
    assert openrouter["cached_input_per_mtok"] is None and openrouter["input_per_mtok"] == "0.27"
