"""OpenAI (or any OpenAI-compatible server at `OPENAI_BASE_URL`)."""

from __future__ import annotations

from chat.providers.openai_compat import OpenAICompatProvider


class OpenAIProvider(OpenAICompatProvider):
    name = "openai"
