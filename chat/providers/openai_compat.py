"""Adapters for OpenAI-compatible chat-completions APIs (OpenAI itself, OpenRouter, any compatible
server at a configured base URL), through the official `openai` SDK.

The SDK's own retries are off (`max_retries=0`): ours retry only before the first delta and count
what they did. Usage comes from the final usage-only chunk (`stream_options.include_usage`).

The SDK builds, authenticates and sends the request and raises its own errors for HTTP statuses;
the event stream itself is read here. The request goes through the SDK's own `post` (its documented
way to an endpoint by path) with the body as plain JSON: `chat.completions.create` first walks the
body against its typed parameters (`async_maybe_transform`), which for a body that is already plain
JSON changes nothing and cost 1.5-2 ms of CPU per request (5.6-6.1 ms against 3.8-4.4 ms, measured
against bench/upstream.py).
The SDK's chunk iterator raises on any chunk that carries an `error` and drops the rest of that
chunk, and OpenRouter sends its billed usage in that very chunk: reading the events ourselves keeps
the usage of an error chunk.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from django.conf import settings

from chat.providers.base import (
    ChatRequest,
    ProviderError,
    Reasoning,
    Usage,
    estimate_usage,
    reconcile,
)
from chat.providers.common import (
    Failure,
    broken_off,
    is_timeout,
    logger,
    parse_retry_after,
    pick,
    to_decimal,
    to_int,
    with_retries,
)
from chat.providers.transport import async_http_client
from usage import endpoints
from usage.catalogue import Listing
from usage.tokens import count_tokens

NO_KEY = "no-key"
# Models an OpenAI-compatible `/models` lists that do not chat: embeddings, speech, images, moderation.
NOT_CHAT = re.compile(r"embed|tts|whisper|transcribe|dall-e|gpt-image|moderation|rerank|davinci|babbage|sora",
                      re.IGNORECASE)
CONTEXT_KEYS = ("max_model_len", "context_length", "context_window")

# One client per (key, base URL, timeout) per event loop: clients keep a connection pool, which
# must be reused across requests but cannot cross event loops. Its connections are plain asyncio
# (chat/providers/transport.py: a third less CPU per streamed delta than anyio's).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, openai.AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def openai_client(api_key: str, base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, base_url, timeout)
    client = per_loop.get(key)
    if client is None:
        client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0,
                                    http_client=async_http_client())
        per_loop[key] = client
    return client


def messages_for(request: ChatRequest) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
    messages.extend({"role": t.role, "content": t.content} for t in request.history)
    messages.append({"role": "user", "content": request.message})
    return messages


def usage_from_openai(raw: Any, request: ChatRequest, text: str, completion_id: str, finish_reason: str,
                      reasoning_text: str = "") -> Usage:
    """Normalise an OpenAI-style usage object (SDK model, dict or dump) into the contract's terms
    (`reconcile`); the estimator fills in when the figures are missing, marked as an estimate."""
    prompt = to_int(pick(raw, "prompt_tokens"))
    completion = to_int(pick(raw, "completion_tokens"))
    if prompt is None and completion is None:
        usage = estimate_usage(request, text, finish_reason=finish_reason, reasoning_text=reasoning_text)
        usage.completion_id = completion_id
        return usage
    prompt, completion, total, reasoning = reconcile(
        prompt or 0, completion or 0, to_int(pick(raw, "total_tokens")),
        to_int(pick(raw, "completion_tokens_details", "reasoning_tokens")) or 0,
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=min(prompt, to_int(pick(raw, "prompt_tokens_details", "cached_tokens")) or 0),
        reasoning_tokens=reasoning,
        completion_id=completion_id,
        finish_reason=finish_reason,
        actual_cost=to_decimal(pick(raw, "cost")),
        source="provider",
    )


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` of each server-sent event (comment lines such as `: OPENROUTER PROCESSING` and
    other fields skipped); stops at `[DONE]`."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                joined = "\n".join(data)
                data.clear()
                if joined.startswith("[DONE]"):
                    return
                yield joined
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data and not data[0].startswith("[DONE]"):
        yield "\n".join(data)


END_OF_BODY_SECONDS = 1.0


async def _read_to_the_end(lines: AsyncIterator[str]) -> None:
    """What follows `[DONE]` (a chunked body's empty last chunk, in the same read or the next), so
    that closing the response hands its connection back to the pool: closed unread, the connection
    is dropped, and the next exchange connects again (a TCP and TLS handshake, for every answer).
    Within END_OF_BODY_SECONDS: a provider that keeps the body open after `[DONE]` loses its
    connection, never the answer."""
    try:
        async with asyncio.timeout(END_OF_BODY_SECONDS):
            async for _ in lines:
                pass
    except Exception:  # noqa: BLE001 - a timeout or a cut after [DONE]: the answer is whole, the connection goes
        pass


def _chunk_error(error: Any) -> ProviderError:
    code = to_int(pick(error, "code"))
    message = pick(error, "message")
    text = f"The provider sent an error mid-stream: {message}" if isinstance(message, str) else (
        "The provider sent an error mid-stream.")
    return ProviderError("RATE_LIMITED" if code == 429 else "PROVIDER_ERROR", text[:500])


def classify_openai_error(exc: BaseException) -> Failure:
    if is_timeout(exc):
        return Failure("TIMEOUT", False, "The provider did not answer in time.")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        if status == 429:
            return Failure("RATE_LIMITED", True, "The provider is rate limiting requests.", retry_after)
        transient = status in (408, 409) or status >= 500
        return Failure("PROVIDER_ERROR", transient, f"The provider answered {status}.", retry_after)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("PROVIDER_ERROR", True, "Could not reach the provider.")
    # httpx errors raised while reading the stream body (peer closed, incomplete chunked read, ...)
    return Failure("PROVIDER_ERROR", True, f"The provider connection failed ({type(exc).__name__}).")


class OpenAICompatProvider:
    """One OpenAI-compatible endpoint, configured by `settings.PROVIDERS[name]`: `openai`, or an
    endpoint of CHATLIMA_OPENAI_ENDPOINTS (whose key is optional)."""

    name = "openai"
    # OpenAI's reasoning models refuse `max_tokens`; other compatible servers (vLLM, Ollama, LM
    # Studio at OPENAI_BASE_URL) mostly know only `max_tokens`.
    max_tokens_param = "max_completion_tokens"
    compatible_max_tokens_param = "max_tokens"
    default_base_url: str | None = None

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    def _config(self) -> dict[str, Any]:
        if not endpoints.provider_is_configured(self.name):
            raise ProviderError("PROVIDER_ERROR", f"The {self.name} provider has no API key configured.")
        config = endpoints.config(self.name)
        # The SDK wants a key; a local server that needs none ignores this one.
        return {**config, "api_key": config.get("api_key") or NO_KEY,
                "base_url": config.get("base_url") or self.default_base_url}

    def _client(self) -> openai.AsyncOpenAI:
        config = self._config()
        return openai_client(config["api_key"], config["base_url"], settings.PROVIDER_TIMEOUT_SECONDS)

    def list_models(self) -> list[Listing]:
        """The models this endpoint answers at `GET <base>/models` (through the SDK), chat models only."""
        config = self._config()
        client = openai.OpenAI(api_key=config["api_key"], base_url=config["base_url"],
                               timeout=settings.CHATLIMA_CATALOGUE_TIMEOUT_SECONDS, max_retries=2)
        try:
            return [listing for model in client.models.list() if (listing := self._listing(model)) is not None]
        finally:
            client.close()

    def _listing(self, model: Any) -> Listing | None:
        model_id = pick(model, "id")
        if not isinstance(model_id, str) or NOT_CHAT.search(model_id):
            return None
        # vLLM says `max_model_len`; others `context_length` or `context_window`, or nothing.
        window = next(filter(None, (to_int(pick(model, k)) for k in CONTEXT_KEYS)), None)
        return Listing(model_id=model_id, context_window=window)

    def _extra_body(self) -> dict[str, Any] | None:
        return None

    def _max_tokens_param(self) -> str:
        base_url = endpoints.config(self.name).get("base_url") or ""
        if not base_url or "api.openai.com" in base_url:
            return self.max_tokens_param
        return self.compatible_max_tokens_param

    def _create_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": messages_for(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs[self._max_tokens_param()] = request.max_tokens
        extra = self._extra_body()
        if extra:
            kwargs.update(extra)
        return kwargs

    async def _attempt(self, request: ChatRequest) -> AsyncIterator[str | Reasoning | Usage]:
        client = self._client()
        raw_usage = error = None
        completion_id = finish_reason = ""
        parts: list[str] = []
        thoughts: list[str] = []
        response = await client.post("/chat/completions", body=self._create_kwargs(request), cast_to=httpx.Response,
                                     stream=True)
        lines = response.aiter_lines()
        try:
            async for data in sse_data(lines):
                try:
                    chunk = json.loads(data)
                except ValueError:
                    logger.warning("%s sent an event that is not JSON: %.80r", self.name, data)
                    continue
                if not isinstance(chunk, dict):
                    continue
                completion_id = completion_id or (pick(chunk, "id") or "")
                if chunk.get("usage") is not None:
                    # Usually the usage-only chunk (empty `choices`) at the end; keep the latest seen.
                    raw_usage = chunk["usage"]
                if chunk.get("error"):
                    error = _chunk_error(chunk["error"])
                for choice in pick(chunk, "choices") or ():
                    finish_reason = pick(choice, "finish_reason") or finish_reason
                    # DeepSeek and xAI call it `reasoning_content`, OpenRouter, Groq and Cerebras `reasoning`.
                    thought = pick(choice, "delta", "reasoning_content") or pick(choice, "delta", "reasoning")
                    if isinstance(thought, str) and thought:
                        thoughts.append(thought)
                        yield Reasoning(thought)
                    content = pick(choice, "delta", "content")
                    if isinstance(content, str) and content:
                        parts.append(content)
                        yield content
                if error is not None:
                    break
            else:
                await _read_to_the_end(lines)
        finally:
            await response.aclose()
        text, reasoning_text = "".join(parts), "".join(thoughts)
        if error is not None:
            if raw_usage is not None:
                error.usage = usage_from_openai(raw_usage, request, text, completion_id, finish_reason, reasoning_text)
            raise error
        if raw_usage is None and not finish_reason:
            raise broken_off(self.name)
        if raw_usage is None:
            logger.info("%s stream for %s ended without usage: estimating", self.name, request.model)
        yield usage_from_openai(raw_usage, request, text, completion_id, finish_reason, reasoning_text)

    def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        return with_retries(lambda: self._attempt(request), classify_openai_error)


    async def count_tokens(self, text: str, model: str) -> int:
        return count_tokens(text, model)
