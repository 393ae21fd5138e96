"""What an exchange cost at list price, in Decimal, from the dated price table (per million tokens)."""

from __future__ import annotations

import logging
import time
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from django.utils import timezone

from chatlima.formats import price_str, quantize_money
from usage.models import ModelPrice

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
# Every exchange looks its model's price up several times; prices change a few times a year.
# Saving a price clears this process's memory at once (see usage.apps); other processes follow
# within PRICE_MEMORY_SECONDS.
PRICE_MEMORY_SECONDS = 30.0
_remembered: dict[tuple[str, date], tuple[float, ModelPrice | None]] = {}


class TokenFigures(Protocol):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int


def _tokens(usage: Any, name: str) -> int:
    return max(0, int(getattr(usage, name, 0) or 0))


def price_cost(price: ModelPrice, usage: TokenFigures) -> Decimal:
    """The cost of `usage` at one price row.

    Uncached input at the input price, cached input at the cached price (the input price where the
    table has none); completion, which includes reasoning, at the output price, except that where
    the table has a reasoning price the reasoning part is charged at it.
    """
    prompt = _tokens(usage, "prompt_tokens")
    completion = _tokens(usage, "completion_tokens")
    cached = min(_tokens(usage, "cached_tokens"), prompt)
    reasoning = min(_tokens(usage, "reasoning_tokens"), completion)
    cached_price = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    total = (prompt - cached) * Decimal(price.input_per_mtok) + cached * Decimal(cached_price)
    if price.reasoning_per_mtok is not None:
        total += (completion - reasoning) * Decimal(price.output_per_mtok) + reasoning * Decimal(price.reasoning_per_mtok)
    else:
        total += completion * Decimal(price.output_per_mtok)
    return quantize_money(total / MILLION)


def cost_of(model_id: str, usage: TokenFigures, on: date | None = None) -> Decimal | None:
    """The list-price cost of `usage` for a model on a day (today by default).

    A model the table does not know costs None (and a warning is logged): never another model's price.
    """
    price = price_for(model_id, on)
    if price is None:
        logger.warning("no price for model %r on %s: cost left unknown", model_id, on or "today")
        return None
    return price_cost(price, usage)


def price_for(model_id: str, on: date | None = None) -> ModelPrice | None:
    """`ModelPrice.objects.for_model`, remembered for PRICE_MEMORY_SECONDS in this process."""
    key = (model_id, on or timezone.now().date())
    now = time.monotonic()
    hit = _remembered.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    price = ModelPrice.objects.for_model(model_id, key[1])
    if len(_remembered) > 1000:
        _remembered.clear()
    _remembered[key] = (now + PRICE_MEMORY_SECONDS, price)
    return price


def forget_prices(**kwargs: Any) -> None:
    """Drop the remembered prices (a price row was saved or deleted)."""
    _remembered.clear()


def price_payload(price: ModelPrice) -> dict[str, Any]:
    """API.md's `pricing` object for a price row (prices as decimal strings per million tokens)."""
    return {
        "currency": price.currency,
        "input_per_mtok": price_str(price.input_per_mtok),
        "output_per_mtok": price_str(price.output_per_mtok),
        "cached_input_per_mtok": price_str(price.cached_input_per_mtok),
        "reasoning_per_mtok": price_str(price.reasoning_per_mtok),
        "effective_date": price.effective_date.isoformat(),
    }
