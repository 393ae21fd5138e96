"""What an exchange costs at list price, in Decimal, at the price in force on its day.

A model's price comes from the first source that has one (API.md, Models; `Price.source`):

1. `admin`: an administrator's `ModelPrice` row (an override, from its effective date);
2. `provider`: the provider's own catalogue price (`ProviderPrice`, learnt by refresh_models from
   OpenRouter), from the day it was first seen;
3. `genai-prices`: the maintained public price data bundled in the `genai-prices` package (price
   history, cache reads, tiers), computed by its own `calc_price`;
4. `free`: the offline model, and providers an administrator marked free;

otherwise the price is unknown (None) and so is the cost: never another model's price.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from django.utils import timezone

from chatlima.formats import price_str, quantize_money
from usage import catalogue, endpoints, genai
from usage.models import ModelPrice, ProviderPrice

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
ADMIN, PROVIDER, GENAI, FREE = "admin", "provider", "genai-prices", "free"
ZERO = Decimal("0")
# Every exchange looks its model's price up several times; prices change a few times a year.
# Saving a price or refreshing the catalogue clears this process's memory at once (see usage.apps);
# other processes follow within PRICE_MEMORY_SECONDS.
PRICE_MEMORY_SECONDS = 30.0
_remembered: dict[tuple[str, str, date], tuple[float, Price | None]] = {}
# Which unpriced (provider, model, day)s this process has already warned about: a log's noise filter,
# nothing decides on it. One warning per exchange flooded the log at volume.
_warned_unpriced: set[tuple[str, str, date]] = set()


class TokenFigures(Protocol):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int


@dataclass(frozen=True)
class Price:
    """A model's price per million tokens on a day, and where it comes from."""

    source: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    reasoning_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    currency: str = "USD"
    effective_date: date | None = None
    genai: genai.GenaiRef | None = None  # a genai-prices price is computed by genai-prices itself

    def cost(self, usage: TokenFigures, at: date | datetime | None = None) -> Decimal:
        """The cost of `usage` at this price (a genai-prices price: what its `calc_price` gives at `at`)."""
        if self.genai is None:
            return price_cost(self, usage)
        prompt = _tokens(usage, "prompt_tokens")
        return quantize_money(genai.cost(self.genai, prompt, min(_tokens(usage, "cached_tokens"), prompt),
                                         _tokens(usage, "completion_tokens"), genai.moment(at)))


def _tokens(usage: Any, name: str) -> int:
    return max(0, int(getattr(usage, name, 0) or 0))


def price_cost(price: Any, usage: TokenFigures) -> Decimal:
    """The cost of `usage` at a table price (an admin's or a provider's row, or a `Price`).

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


def cost_of(model_id: str, usage: TokenFigures, on: date | datetime | None = None,
            provider: str | None = None) -> Decimal | None:
    """The list-price cost of `usage` for a model at a moment or on a day (now by default).

    `provider` is the provider that served it (default: the one serving the model now). A model no
    source prices costs None (and a warning is logged): never another model's price.
    """
    price = price_for(model_id, on, provider)
    if price is None:
        key = (provider or "", model_id, _day(on))
        if key not in _warned_unpriced:
            if len(_warned_unpriced) > 5000:
                _warned_unpriced.clear()
            _warned_unpriced.add(key)
            logger.warning("no price for model %r on %s: cost left unknown (said once a day per process)",
                           model_id, on or "today")
        return None
    return price.cost(usage, on)


def _day(on: date | datetime | None) -> date:
    if on is None:
        return timezone.now().astimezone(UTC).date()
    if isinstance(on, datetime):
        return (on if on.tzinfo else on.replace(tzinfo=UTC)).astimezone(UTC).date()
    return on


def price_for(model_id: str, on: date | datetime | None = None, provider: str | None = None) -> Price | None:
    """The price in force for a model on a day (the UTC day of a moment; today by default), from the
    first source that has one; remembered for PRICE_MEMORY_SECONDS in this process."""
    provider = provider or catalogue.provider_of(model_id, servable_only=False) or ""
    day = _day(on)
    key = (provider, model_id, day)
    now = time.monotonic()
    hit = _remembered.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    price = prices_on([(provider, model_id)], day)[(provider, model_id)]
    if len(_remembered) > 5000:
        _remembered.clear()
    _remembered[key] = (now + PRICE_MEMORY_SECONDS, price)
    return price


def admin_prices_on(day: date, model_ids: set[str] | None = None) -> dict[str, ModelPrice]:
    """The administrator's price in force on `day` for each model that has one (of `model_ids`)."""
    rows = ModelPrice.objects.filter(is_active=True, effective_date__lte=day)
    if model_ids is not None and len(model_ids) <= 100:
        rows = rows.filter(model_id__in=model_ids)
    return {row.model_id: row for row in rows.order_by("model_id", "effective_date")}


def prices_on(keys: list[tuple[str, str]], day: date,
              admin: dict[str, ModelPrice] | None = None) -> dict[tuple[str, str], Price | None]:
    """The price of each (provider, model id) on `day`, in two queries however many there are (one,
    given the administrator's prices of that day)."""
    model_ids = {model_id for _, model_id in keys}
    if admin is None:
        admin = admin_prices_on(day, model_ids)
    listed: dict[tuple[str, str], ProviderPrice] = {}
    rows = ProviderPrice.objects.filter(effective_date__lte=day).select_related("entry")
    if len(model_ids) <= 100:
        rows = rows.filter(entry__model_id__in=model_ids)
    for row in rows.order_by("entry_id", "effective_date"):
        listed[(row.entry.provider, row.entry.model_id)] = row
    at = genai.moment(day)
    return {key: _first_price(key, admin.get(key[1]), listed.get(key), at) for key in keys}


def _first_price(key: tuple[str, str], admin: ModelPrice | None, listed: ProviderPrice | None,
                 at: datetime) -> Price | None:
    provider, model_id = key
    if admin is not None:
        return _from_row(ADMIN, admin)
    if listed is not None:
        return _from_row(PROVIDER, listed)
    ref = genai.ref_for(provider, model_id) if provider else None
    known = genai.price_at(ref, at) if ref is not None else None
    if known is not None:
        return Price(GENAI, known.input_per_mtok, known.output_per_mtok, known.cached_input_per_mtok,
                     cache_write_per_mtok=known.cache_write_per_mtok, effective_date=known.effective_date, genai=ref)
    if provider and endpoints.is_free(provider):
        return Price(FREE, ZERO, ZERO, ZERO, ZERO)
    return None


def _from_row(source: str, row: ModelPrice | ProviderPrice) -> Price:
    return Price(
        source, Decimal(row.input_per_mtok), Decimal(row.output_per_mtok), row.cached_input_per_mtok,
        row.reasoning_per_mtok, getattr(row, "cache_write_per_mtok", None), row.currency, row.effective_date,
    )


def forget_prices(**kwargs: Any) -> None:
    """Drop the remembered prices and model providers (a price was saved or the catalogue refreshed)."""
    _remembered.clear()
    catalogue.forget()


def price_payload(price: Price | None) -> dict[str, Any] | None:
    """API.md's `pricing` object (decimal strings per million tokens), or None for an unknown price.

    `reasoning_per_mtok` is the price reasoning tokens are charged at: the output price unless the
    source sets one apart.
    """
    if price is None:
        return None
    return {
        "currency": price.currency,
        "input_per_mtok": price_str(price.input_per_mtok),
        "output_per_mtok": price_str(price.output_per_mtok),
        "cached_input_per_mtok": price_str(price.cached_input_per_mtok),
        "reasoning_per_mtok": price_str(
            price.reasoning_per_mtok if price.reasoning_per_mtok is not None else price.output_per_mtok),
        "cache_write_per_mtok": price_str(price.cache_write_per_mtok),
        "effective_date": price.effective_date.isoformat() if price.effective_date else None,
        "source": price.source,
    }
