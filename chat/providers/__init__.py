"""The provider registry: which adapter serves a model, and the adapters themselves.

Adapters read their keys, base URLs, timeouts and retry budget from settings at call time, so a
test (or an admin changing the environment) never needs to rebuild them.
"""

from __future__ import annotations

import importlib
import threading

from chat.providers.base import Provider, ProviderError
from chatlima.errors import ClientError
from usage import catalogue, endpoints
from usage.models import provider_is_configured

__all__ = ["PROVIDER_NAMES", "Provider", "ProviderError", "get_provider", "provider_is_configured",
           "provider_name_for_model", "usable_provider"]

# name -> (module, class); imported on first use so the offline model never loads an SDK. Every
# other name in settings.PROVIDERS is an OpenAI-compatible endpoint (CHATLIMA_OPENAI_ENDPOINTS).
_ADAPTERS: dict[str, tuple[str, str]] = {
    "offline": ("chat.providers.offline", "OfflineProvider"),
    "openai": ("chat.providers.openai", "OpenAIProvider"),
    "openrouter": ("chat.providers.openrouter", "OpenRouterProvider"),
    "gemini": ("chat.providers.gemini", "GeminiProvider"),
}
_ENDPOINT_ADAPTER = ("chat.providers.openai_compat", "OpenAICompatProvider")
PROVIDER_NAMES = tuple(_ADAPTERS)

_instances: dict[str, Provider] = {}
_lock = threading.Lock()


def get_provider(name: str) -> Provider:
    """The adapter for a provider name (offline, openai, openrouter, gemini, or a configured
    OpenAI-compatible endpoint); one instance each."""
    provider = _instances.get(name)
    if provider is not None:
        return provider
    if name in _ADAPTERS:
        (module_name, class_name), args = _ADAPTERS[name], ()
    elif endpoints.is_endpoint(name):
        (module_name, class_name), args = _ENDPOINT_ADAPTER, (name,)
    else:
        raise ProviderError("PROVIDER_ERROR", f"Unknown provider {name!r}.")
    with _lock:
        provider = _instances.get(name)
        if provider is None:
            provider = getattr(importlib.import_module(module_name), class_name)(*args)
            _instances[name] = provider
    return provider


def provider_name_for_model(model_id: str) -> str | None:
    """The provider serving a model, from the catalogue (usage.catalogue.provider_of); None for a
    model no known provider lists now (unknown, or gone from its provider's catalogue).

    Synchronous (a database read, remembered briefly): async callers wrap it in `sync_to_async`.
    """
    return catalogue.provider_of(model_id)


def usable_provider(model_id: str) -> str:
    """The provider that will answer `model_id`, or MODEL_UNAVAILABLE: the one rule for every door
    (sends, the draft estimate, a conversation's model set over REST) - the model must be in the
    catalogue and its provider configured. Synchronous (a database read)."""
    name = provider_name_for_model(model_id)
    if name is None:
        raise ClientError("MODEL_UNAVAILABLE", f"Unknown model {model_id!r}.", {"model": model_id})
    if not provider_is_configured(name):
        raise ClientError(
            "MODEL_UNAVAILABLE", f"The model {model_id!r} is not available: its provider has no key.",
            {"model": model_id, "provider": name},
        )
    return name
