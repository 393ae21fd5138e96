"""Costs in Decimal from the first source that prices a model (admin > provider > genai-prices > free),
checked against figures worked out by hand."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

import pytest

from chat.providers.base import Usage
from usage.models import CatalogueEntry, ModelPrice, ProviderPrice
from usage.pricing import cost_of, price_for, price_payload

pytestmark = pytest.mark.django_db


def usage(prompt=0, completion=0, cached=0, reasoning=0) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 cached_tokens=cached, reasoning_tokens=reasoning)


def admin_price(model_id: str, provider: str = "openai", effective: date = date(2025, 1, 1), **prices) -> ModelPrice:
    figures = {"input_per_mtok": Decimal("1"), "output_per_mtok": Decimal("4"), **prices}
    return ModelPrice.objects.create(provider=provider, model_id=model_id, display_name=model_id, context_window=1,
                                     effective_date=effective, **figures)


def test_gemini_cached_and_reasoning_tokens_each_at_their_price():
    # gemini-2.5-flash (genai-prices): input 0.30, cached 0.03, output (reasoning included) 2.50 per Mtok.
    # 800 uncached * 0.30 = 240; 200 cached * 0.03 = 6; 200 answer * 2.50 = 500; 300 reasoning * 2.50 = 750
    # (240 + 6 + 500 + 750) / 1e6 = 0.001496
    cost = cost_of("gemini-2.5-flash", usage(prompt=1000, cached=200, completion=500, reasoning=300))
    assert cost == Decimal("0.00149600")
    assert isinstance(cost, Decimal)
    assert price_for("gemini-2.5-flash").source == "genai-prices"


def test_reasoning_price_differs_from_output_price():
    admin_price("think-1", cached_input_per_mtok=Decimal("0.5"), reasoning_per_mtok=Decimal("8"))
    # 900*1 + 100*0.5 + 400*4 + 600*8 = 900 + 50 + 1600 + 4800 = 7350 -> 0.00735
    assert cost_of("think-1", usage(prompt=1000, cached=100, completion=1000, reasoning=600)) == Decimal("0.00735000")


def test_without_reasoning_price_reasoning_is_output():
    # gpt-4o: input 2.50, cached 1.25, output 10.00, no reasoning price.
    # 600*2.50 + 400*1.25 + 500*10 = 1500 + 500 + 5000 = 7000 -> 0.007
    assert cost_of("gpt-4o", usage(prompt=1000, cached=400, completion=500, reasoning=100)) == Decimal("0.00700000")


def test_without_cached_price_cached_input_is_input_price():
    admin_price("plain-1", input_per_mtok=Decimal("0.27"), output_per_mtok=Decimal("1.10"))
    # no cached price: 1000*0.27 + 100*1.10 = 380 -> 0.00038
    assert cost_of("plain-1", usage(prompt=1000, cached=500, completion=100)) == Decimal("0.00038000")


def test_rounds_half_up_to_eight_places():
    # gemini-2.5-pro cached 0.125/Mtok: one cached token = 0.000000125, a tie; half-up gives ...13
    # (banker's rounding would give ...12).
    assert cost_of("gemini-2.5-pro", usage(prompt=1, cached=1)) == Decimal("0.00000013")


def test_gemini_pro_above_200k_prompt_tokens_is_charged_its_higher_tier():
    small, large = usage(prompt=200_000, completion=0), usage(prompt=200_001, completion=0)
    assert cost_of("gemini-2.5-pro", small) == Decimal("0.25000000")  # 200,000 * 1.25 / 1e6
    assert cost_of("gemini-2.5-pro", large) == Decimal("0.50000250")  # 200,001 * 2.50 / 1e6


def test_price_in_force_on_the_day_is_used():
    admin_price("gpt-4o", input_per_mtok=Decimal("5"), output_per_mtok=Decimal("20"), effective=date(2026, 1, 1))
    figures = usage(prompt=1000, completion=1000)
    assert cost_of("gpt-4o", figures, on=date(2025, 12, 31)) == Decimal("0.01250000")  # genai-prices: 2500 + 10000
    assert cost_of("gpt-4o", figures, on=date(2026, 1, 2)) == Decimal("0.02500000")  # the admin's: 5000 + 20000


def test_sources_in_order_admin_provider_genai_prices_then_free(settings):
    model = "moonshotai/kimi-k2"  # seeded under openrouter; genai-prices knows it too
    assert price_for(model).source == "genai-prices"
    entry = CatalogueEntry.objects.get(provider="openrouter", model_id=model)
    ProviderPrice.objects.create(entry=entry, effective_date=date(2025, 1, 1), input_per_mtok=Decimal("0.6"),
                                 output_per_mtok=Decimal("2.5"))
    assert price_for(model).source == "provider"
    assert cost_of(model, usage(prompt=10, completion=2)) == Decimal("0.00001100")
    admin = admin_price(model, provider="openrouter")
    assert price_for(model).source == "admin"
    admin.is_active = False
    admin.save()
    assert price_for(model).source == "provider"

    settings.PROVIDERS = {**settings.PROVIDERS, "box": {"api_key": "", "base_url": "http://127.0.0.1:9/v1",
                                                        "free": False}}
    CatalogueEntry.objects.create(provider="box", model_id="qwen3:8b", display_name="qwen3:8b")
    assert price_for("qwen3:8b") is None and cost_of("qwen3:8b", usage(prompt=5)) is None
    settings.PROVIDERS = {**settings.PROVIDERS, "box": {**settings.PROVIDERS["box"], "free": True}}
    from usage.pricing import forget_prices

    forget_prices()
    assert price_for("qwen3:8b").source == "free" and cost_of("qwen3:8b", usage(prompt=5)) == 0


def test_unknown_model_costs_none_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="usage.pricing"):
        assert cost_of("gpt-4o-mini-nonexistent", usage(prompt=10, completion=10)) is None
    assert "gpt-4o-mini-nonexistent" in caplog.text


def test_an_unknown_model_is_warned_about_once_a_day_per_process_not_per_exchange(caplog):
    with caplog.at_level(logging.WARNING, logger="usage.pricing"):
        for _ in range(5):
            assert cost_of("unpriced-model-once", usage(prompt=10)) is None
        assert cost_of("unpriced-model-once", usage(prompt=10), date(2025, 3, 1)) is None
    warnings = [r for r in caplog.records if "unpriced-model-once" in r.getMessage()]
    assert len(warnings) == 2  # today's, and 2025-03-01's


def test_offline_model_is_free():
    assert cost_of("offline-demo", usage(prompt=123, completion=456)) == Decimal("0E-8")
    assert price_for("offline-demo").source == "free"


def test_price_payload_matches_the_contract():
    assert price_payload(price_for("gemini-2.5-flash")) == {
        "currency": "USD", "input_per_mtok": "0.30", "output_per_mtok": "2.50",
        "cached_input_per_mtok": "0.03", "reasoning_per_mtok": "2.50", "cache_write_per_mtok": None,
        "effective_date": None, "source": "genai-prices",
    }
    admin_price("plain-1", input_per_mtok=Decimal("0.27"), output_per_mtok=Decimal("1.10"))
    plain = price_payload(price_for("plain-1"))
    assert plain["cached_input_per_mtok"] is None and plain["input_per_mtok"] == "0.27"
    assert plain["reasoning_per_mtok"] == "1.10" and plain["source"] == "admin"
    assert plain["effective_date"] == "2025-01-01"
    assert price_payload(None) is None
