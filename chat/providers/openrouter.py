"""OpenRouter: the OpenAI SDK at OpenRouter's base URL, with usage accounting for the billed cost.

Its catalogue (`GET /api/v1/models`) names each model and gives its context length and its list
price per token (`pricing.prompt`, `completion`, `input_cache_read`, `input_cache_write`,
`internal_reasoning`, as decimal strings; "-1" where the price varies per request, as for its router).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from chat.providers.common import pick, to_int
from chat.providers.openai_compat import OpenAICompatProvider
from usage.catalogue import ListedPrice, Listing

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
MILLION = Decimal(1_000_000)


def per_mtok(value: Any) -> Decimal | None:
    """A per-token price string as USD per million tokens, exactly; None when absent or variable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return (price * MILLION).normalize()


def listed_price(pricing: Any) -> ListedPrice | None:
    prompt, completion = per_mtok(pick(pricing, "prompt")), per_mtok(pick(pricing, "completion"))
    if prompt is None or completion is None:
        return None
    reasoning = per_mtok(pick(pricing, "internal_reasoning"))
    return ListedPrice(
        input_per_mtok=prompt, output_per_mtok=completion,
        cached_input_per_mtok=per_mtok(pick(pricing, "input_cache_read")),
        cache_write_per_mtok=per_mtok(pick(pricing, "input_cache_write")),
        # "0" means reasoning is not priced apart: it is output, at the completion price.
        reasoning_per_mtok=reasoning or None,
    )


class OpenRouterProvider(OpenAICompatProvider):
    name = "openrouter"
    max_tokens_param = compatible_max_tokens_param = "max_tokens"
    default_base_url = DEFAULT_BASE_URL

    def _extra_body(self) -> dict[str, Any]:
        # Usage accounting puts what OpenRouter billed (`cost`) into the final usage chunk.
        return {"usage": {"include": True}}

    def _listing(self, model: Any) -> Listing | None:
        model_id = pick(model, "id")
        if not isinstance(model_id, str):
            return None
        outputs = pick(model, "architecture", "output_modalities")
        if isinstance(outputs, list) and "text" not in outputs:
            return None  # image or audio generators
        name = pick(model, "name")
        return Listing(
            model_id=model_id, display_name=name if isinstance(name, str) else "",
            context_window=to_int(pick(model, "context_length")) or to_int(pick(model, "top_provider", "context_length")),
            price=listed_price(pick(model, "pricing")),
        )
