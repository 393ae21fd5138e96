from __future__ import annotations

from tests.fakes.fixtures import fake_endpoint, fake_gemini, fake_openai, fake_openrouter  # noqa: F401
