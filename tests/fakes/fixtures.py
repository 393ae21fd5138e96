"""Pytest fixtures for the fake providers. Import them into a conftest.py:

    from tests.fakes.fixtures import fake_gemini, fake_openai, fake_openrouter  # noqa: F401

Each starts a fresh fake on 127.0.0.1 (port 0) for one test, points `settings.PROVIDERS[...]` at it
with a dummy key (so the provider counts as configured), and makes retries quick.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI

DUMMY_KEY = "sk-fake-test-key"


def _point(settings, name: str, base_url: str) -> None:
    providers = {k: dict(v) for k, v in settings.PROVIDERS.items()}
    providers[name] = {"api_key": DUMMY_KEY, "base_url": base_url}
    settings.PROVIDERS = providers
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.001
    settings.PROVIDER_RETRY_MAX_SECONDS = 0.05


@pytest.fixture
def fake_openai(settings) -> Iterator[FakeOpenAI]:
    """A FakeOpenAI serving the `openai` provider."""
    with FakeOpenAI() as fake:
        _point(settings, "openai", fake.base_url)
        yield fake


@pytest.fixture
def fake_openrouter(settings) -> Iterator[FakeOpenAI]:
    """A FakeOpenAI serving the `openrouter` provider at OpenRouter's path (`/api/v1`); script
    `usage={"cost": "0.0012"}` for its billed cost, `fake.models` for its catalogue."""
    with FakeOpenAI(base_path="/api/v1") as fake:
        _point(settings, "openrouter", fake.base_url)
        yield fake


@pytest.fixture
def fake_gemini(settings) -> Iterator[FakeGemini]:
    """A FakeGemini serving the `gemini` provider."""
    with FakeGemini() as fake:
        _point(settings, "gemini", fake.base_url)
        yield fake


@pytest.fixture
def fake_endpoint(settings) -> Iterator[FakeOpenAI]:
    """A FakeOpenAI serving an extra OpenAI-compatible endpoint named `local` (no key, as a local
    Ollama or vLLM), listing `llama3.2:3b`; mark it free with `settings.PROVIDERS["local"]["free"] = True`."""
    from tests.fakes.openai_server import openai_model

    with FakeOpenAI() as fake:
        fake.models = [openai_model("llama3.2:3b", owned_by="library"), openai_model("nomic-embed-text")]
        providers = {k: dict(v) for k, v in settings.PROVIDERS.items()}
        providers["local"] = {"api_key": "", "base_url": fake.base_url, "free": False, "label": "Local"}
        settings.PROVIDERS = providers
        settings.PROVIDER_RETRY_BASE_SECONDS = 0.001
        settings.PROVIDER_RETRY_MAX_SECONDS = 0.05
        yield fake
