"""The configured providers, as settings.PROVIDERS has them: which exist, which are usable, in what order.

Built in: `offline` (always usable, free), `openai`, `openrouter` and `gemini` (usable once their key
is set). Every other name in PROVIDERS is an OpenAI-compatible endpoint from
CHATLIMA_OPENAI_ENDPOINTS (usable once its base URL is set; its key is optional).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

OFFLINE = "offline"
BUILTIN = ("offline", "openai", "openrouter", "gemini")
LABELS = {"offline": "Offline", "openai": "OpenAI", "openrouter": "OpenRouter", "gemini": "Gemini"}
# Where genai-prices keeps each built-in provider's prices (its provider ids).
GENAI_PROVIDER = {"openai": "openai", "openrouter": "openrouter", "gemini": "google"}


def config(name: str) -> dict[str, Any]:
    return settings.PROVIDERS.get(name) or {}


def is_endpoint(name: str) -> bool:
    """An OpenAI-compatible endpoint named in CHATLIMA_OPENAI_ENDPOINTS (not a built-in provider)."""
    return name not in BUILTIN and name in settings.PROVIDERS


def is_known(name: str) -> bool:
    return name == OFFLINE or name in settings.PROVIDERS


def provider_is_configured(name: str) -> bool:
    """A provider is usable when its key is set (an endpoint: its base URL); the offline model always is."""
    if name == OFFLINE:
        return True
    if is_endpoint(name):
        return bool(config(name).get("base_url"))
    return bool(config(name).get("api_key"))


def is_free(name: str) -> bool:
    """The offline model, and providers an administrator marked free (CHATLIMA_ENDPOINT_<NAME>_FREE, OPENAI_FREE)."""
    return name == OFFLINE or bool(config(name).get("free"))


def label(name: str) -> str:
    return config(name).get("label") or LABELS.get(name, name)


def provider_order() -> list[str]:
    """Every known provider, built-ins first, then the endpoints in the order they were configured."""
    return [OFFLINE, *(name for name in settings.PROVIDERS if name != OFFLINE)]


def rank(name: str) -> int:
    """A provider's place in `provider_order` (unknown providers last)."""
    order = provider_order()
    return order.index(name) if name in order else len(order)
