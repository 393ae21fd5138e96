"""genai-prices (pydantic's maintained price data, bundled in the package) as one of the price sources.

Only the bundled data is used: its network updates (`genai_prices.UpdatePrices`) are never started,
so prices change when the pinned package is upgraded, and the same day always gives the same price.
Every call goes through the public `genai_prices.calc_price`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

import genai_prices
from genai_prices import types as genai_types

from usage import endpoints

# A day alone is priced at its noon (UTC): price changes take effect on whole UTC days.
NOON = time(12, 0)


@dataclass(frozen=True)
class GenaiRef:
    """How genai-prices finds one model: the model id and its provider (an id, or an API URL)."""

    model_ref: str
    provider_id: str | None = None
    provider_api_url: str | None = None

    def kwargs(self) -> dict[str, str]:
        if self.provider_id is not None:
            return {"provider_id": self.provider_id}
        return {"provider_api_url": self.provider_api_url or ""}


@dataclass(frozen=True)
class GenaiPrice:
    """The per-million prices genai-prices has for a model at a moment (the base tier of tiered prices)."""

    ref: GenaiRef
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    effective_date: date | None
    name: str | None
    context_window: int | None


def moment(on: date | datetime | None) -> datetime:
    """The timestamp genai-prices is asked about: a moment as given, a day at its noon UTC, else now."""
    if on is None:
        return datetime.now(UTC)
    if isinstance(on, datetime):
        return on if on.tzinfo else on.replace(tzinfo=UTC)
    return datetime.combine(on, NOON, UTC)


def ref_for(provider: str, model_id: str) -> GenaiRef | None:
    """Where genai-prices keeps a provider's prices: the built-ins by id; an endpoint by its base URL,
    when that URL is one genai-prices knows (a local server's is not: its models are not priced here)."""
    if provider in endpoints.GENAI_PROVIDER:
        return GenaiRef(model_id, provider_id=endpoints.GENAI_PROVIDER[provider])
    base_url = endpoints.config(provider).get("base_url") if endpoints.is_endpoint(provider) else None
    return GenaiRef(model_id, provider_api_url=base_url) if base_url else None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, genai_types.TieredPrices):
        return value.base
    return Decimal(value)


@lru_cache(maxsize=4096)  # the bundled data never changes in a process
def price_at(ref: GenaiRef, at: datetime) -> GenaiPrice | None:
    """genai-prices' price of the model at `at`; None when it does not know the model or its provider."""
    try:
        calc = genai_prices.calc_price(genai_prices.Usage(input_tokens=0, output_tokens=0), ref.model_ref,
                                       genai_request_timestamp=at, **ref.kwargs())
    except LookupError:
        return None
    price = calc.model_price
    if price.input_mtok is None and price.output_mtok is None:
        return None  # priced per request or per second only (images, audio): not a chat model's price
    return GenaiPrice(
        ref=ref,
        input_per_mtok=_decimal(price.input_mtok) or Decimal("0"),
        output_per_mtok=_decimal(price.output_mtok) or Decimal("0"),
        cached_input_per_mtok=_decimal(price.cache_read_mtok),
        cache_write_per_mtok=_decimal(price.cache_write_mtok),
        effective_date=_start_date(calc.model, at),
        name=calc.model.name,
        context_window=calc.model.context_window,
    )


def _start_date(model: genai_types.ModelInfo, at: datetime) -> date | None:
    if not isinstance(model.prices, list):
        return None
    for conditional in reversed(model.prices):
        constraint = conditional.constraint
        if constraint is None or constraint.active(at):
            return getattr(constraint, "start_date", None)
    return None


def cost(ref: GenaiRef, prompt: int, cached: int, completion: int, at: datetime) -> Decimal:
    """What `genai_prices.calc_price` gives for these figures at `at` (tiers, cache reads and history its own).

    Prompt includes the cached tokens (genai-prices' `input_tokens` does too); completion includes
    reasoning, which genai-prices charges at the output price.
    """
    usage = genai_prices.Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
    return genai_prices.calc_price(usage, ref.model_ref, genai_request_timestamp=at, **ref.kwargs()).total_price
