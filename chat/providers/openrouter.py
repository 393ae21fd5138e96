"""OpenRouter: the OpenAI SDK at OpenRouter's base URL, with usage accounting for the billed cost."""

from __future__ import annotations

from typing import Any

import openai
from django.conf import settings

from chat.providers.openai_compat import OpenAICompatProvider, openai_client

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


class OpenRouterProvider(OpenAICompatProvider):
    name = "openrouter"
    max_tokens_param = compatible_max_tokens_param = "max_tokens"

    def _client(self) -> openai.AsyncOpenAI:
        config = self._config()
        return openai_client(config["api_key"], config.get("base_url") or DEFAULT_BASE_URL,
                             settings.PROVIDER_TIMEOUT_SECONDS)

    def _extra_body(self) -> dict[str, Any]:
        # Usage accounting puts what OpenRouter billed (`cost`) into the final usage chunk.
        return {"usage": {"include": True}}
