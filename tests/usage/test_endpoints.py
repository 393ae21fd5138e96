"""More OpenAI-compatible endpoints from the environment: each a provider of its own."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat import providers
from chat.providers.base import ProviderError
from chat.providers.openai_compat import OpenAICompatProvider
from chatlima.settings import openai_endpoints
from usage import endpoints
from usage.models import CatalogueEntry
from usage.pricing import price_for


def test_endpoints_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHATLIMA_ENDPOINT_OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("CHATLIMA_ENDPOINT_OLLAMA_FREE", "true")
    monkeypatch.setenv("CHATLIMA_ENDPOINT_LM_STUDIO_BASE_URL", "http://127.0.0.1:1234/v1")
    monkeypatch.setenv("CHATLIMA_ENDPOINT_LM_STUDIO_API_KEY", "lm-key")
    monkeypatch.setenv("CHATLIMA_ENDPOINT_LM_STUDIO_LABEL", "LM Studio")
    assert openai_endpoints("ollama, lm-studio") == {
        "ollama": {"api_key": "", "base_url": "http://127.0.0.1:11434/v1", "free": True, "label": "ollama"},
        "lm-studio": {"api_key": "lm-key", "base_url": "http://127.0.0.1:1234/v1", "free": False, "label": "LM Studio"},
    }
    assert openai_endpoints("") == {}


@pytest.mark.parametrize("names", ["openai", "Ollama", "two words", "ollama,ollama", "x" * 40])
def test_a_bad_endpoint_name_stops_the_start(names, monkeypatch):
    monkeypatch.setenv("CHATLIMA_ENDPOINT_OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1")
    with pytest.raises(ImproperlyConfigured):
        openai_endpoints(names)


def test_an_endpoint_without_a_base_url_stops_the_start(monkeypatch):
    monkeypatch.delenv("CHATLIMA_ENDPOINT_VLLM_BASE_URL", raising=False)
    with pytest.raises(ImproperlyConfigured, match="CHATLIMA_ENDPOINT_VLLM_BASE_URL"):
        openai_endpoints("vllm")


@pytest.fixture
def two_endpoints(settings):
    settings.PROVIDERS = {**settings.PROVIDERS,
                          "ollama": {"api_key": "", "base_url": "http://127.0.0.1:11434/v1", "free": True},
                          "groq": {"api_key": "gsk", "base_url": "https://api.groq.com/openai/v1"}}


def test_each_endpoint_is_a_configured_provider_with_its_own_adapter(two_endpoints):
    assert endpoints.provider_order() == ["offline", "openai", "openrouter", "gemini", "ollama", "groq"]
    assert endpoints.provider_is_configured("ollama")  # a local server needs no key
    assert endpoints.label("ollama") == "ollama" and endpoints.label("openrouter") == "OpenRouter"
    adapter = providers.get_provider("ollama")
    assert isinstance(adapter, OpenAICompatProvider) and adapter.name == "ollama"
    assert providers.get_provider("ollama") is adapter
    assert providers.get_provider("groq").name == "groq"
    with pytest.raises(ProviderError):
        providers.get_provider("no-such-endpoint")


@pytest.mark.django_db
def test_an_endpoint_genai_prices_knows_by_its_url_is_priced_from_it_a_local_one_is_free(two_endpoints):
    CatalogueEntry.objects.create(provider="groq", model_id="llama-3.3-70b-versatile", display_name="Llama 3.3 70B")
    CatalogueEntry.objects.create(provider="ollama", model_id="llama-3.3-70b-versatile", display_name="Llama 3.3 70B")
    CatalogueEntry.objects.create(provider="ollama", model_id="qwen3:8b", display_name="qwen3:8b")
    assert price_for("llama-3.3-70b-versatile", provider="groq").source == "genai-prices"
    assert price_for("llama-3.3-70b-versatile", provider="ollama").source == "free"
    assert price_for("qwen3:8b").source == "free"
    # The same id at two endpoints: the first configured serves it.
    assert providers.provider_name_for_model("llama-3.3-70b-versatile") == "ollama"
