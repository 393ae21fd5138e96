"""Gemini through the `google-genai` SDK (`client.aio.models.generate_content_stream`).

On the wire the SDK (google-genai 3.x) POSTs `{base_url}/v1/models/{model}:streamGenerateContent?alt=sse`
(`v1beta` with GOOGLE_GENAI_API_VERSION=beta) with the key in `x-goog-api-key`, and reads
`data: {GenerateContentResponse JSON}` server-sent events.

`usage_metadata` is cumulative across chunks and may come on a chunk with no text, so the LAST one
wins (summing would count the prompt once per chunk). Thinking tokens are output tokens:
completion = candidates + thoughts, reasoning = thoughts; the prompt of a server-side tool call
(`toolUsePromptTokenCount`) is input: prompt = promptTokenCount + toolUsePromptTokenCount; the
figures add up to Gemini's own `totalTokenCount`. A stream without a finish reason broke off.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from chat.providers.base import (
    ChatRequest,
    ProviderError,
    Reasoning,
    Usage,
    estimate_usage,
    reconcile,
)
from chat.providers.common import Failure, broken_off, is_timeout, logger, parse_retry_after, pick, to_int, with_retries
from usage.catalogue import Listing
from usage.tokens import count_tokens

LIST_PAGE_SIZE = 100

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter"}
COUNT_TOKENS_TIMEOUT_SECONDS = 3.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, genai.Client]] = weakref.WeakKeyDictionary()


def gemini_client(api_key: str, base_url: str | None, timeout: float) -> genai.Client:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (api_key, base_url, timeout)
    client = per_loop.get(key)
    if client is None:
        client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=base_url,
            timeout=max(1, int(timeout * 1000)),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # our retries, not the SDK's
        ))
        per_loop[key] = client
    return client


def contents_for(request: ChatRequest) -> list[types.Content]:
    contents = [
        types.Content(role="model" if turn.role == "assistant" else "user", parts=[types.Part(text=turn.content)])
        for turn in request.history
    ]
    contents.append(types.Content(role="user", parts=[types.Part(text=request.message)]))
    return contents


def _finish_reason(value: Any) -> str:
    if value is None:
        return ""
    name = getattr(value, "name", None) or str(value)
    name = name.rsplit(".", 1)[-1]
    return _FINISH.get(name, name.lower())


def usage_from_gemini(meta: Any, request: ChatRequest, text: str, response_id: str, finish_reason: str,
                      reasoning_text: str = "") -> Usage:
    """Normalise Gemini's usage metadata; the estimator fills in when it is missing (marked)."""
    prompt = to_int(pick(meta, "prompt_token_count"))
    candidates = to_int(pick(meta, "candidates_token_count"))
    thoughts = to_int(pick(meta, "thoughts_token_count"))
    if prompt is None and candidates is None and thoughts is None:
        usage = estimate_usage(request, text, finish_reason=finish_reason, reasoning_text=reasoning_text)
        usage.completion_id = response_id
        return usage
    tool_prompt = to_int(pick(meta, "tool_use_prompt_token_count")) or 0
    thoughts = thoughts or 0
    prompt, completion, total, reasoning = reconcile(
        (prompt or 0) + tool_prompt, (candidates or 0) + thoughts, to_int(pick(meta, "total_token_count")), thoughts,
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=min(prompt, to_int(pick(meta, "cached_content_token_count")) or 0),
        reasoning_tokens=reasoning,
        completion_id=response_id,
        finish_reason=finish_reason,
        source="provider",
    )


def _retry_delay_hint(exc: genai_errors.APIError) -> float | None:
    """Retry-After, else the `retryDelay` ("7s") of a google.rpc.RetryInfo in the error details."""
    hint = parse_retry_after(getattr(exc.response, "headers", None))
    if hint is not None:
        return hint
    for detail in pick(exc.details, "error", "details") or ():
        delay = pick(detail, "retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def classify_gemini_error(exc: BaseException) -> Failure:
    if is_timeout(exc):
        return Failure("TIMEOUT", False, "The provider did not answer in time.")
    if isinstance(exc, genai_errors.APIError):
        code = exc.code or 0
        if code == 429:
            return Failure("RATE_LIMITED", True, "The provider is rate limiting requests.", _retry_delay_hint(exc))
        if code == 504:
            return Failure("TIMEOUT", True, "The provider timed out (504).")
        transient = code in (408, 409) or code >= 500
        return Failure("PROVIDER_ERROR", transient, f"The provider answered {code}.", _retry_delay_hint(exc))
    return Failure("PROVIDER_ERROR", True, f"The provider connection failed ({type(exc).__name__}).")


_END = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _pumped(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Iterate the SDK's stream from a helper task, so closing us closes its HTTP response at once.

    The SDK's stream is a chain of async generators; `aclose()` on the outer one leaves the inner
    ones (and the HTTP response) suspended until garbage collection. Cancelling a task that is
    awaiting the network instead unwinds the whole chain, running the SDK's own `finally` that
    closes the response.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()  # unbounded: the pump always waits on the network

    async def pump() -> None:
        try:
            async for chunk in stream:
                queue.put_nowait(chunk)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which classifies it
            queue.put_nowait(_Raised(exc))
        else:
            queue.put_nowait(_END)

    task = asyncio.ensure_future(pump())
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


class GeminiProvider:
    name = "gemini"

    def _client(self) -> genai.Client:
        config = settings.PROVIDERS.get(self.name) or {}
        if not config.get("api_key"):
            raise ProviderError("PROVIDER_ERROR", "The gemini provider has no API key configured.")
        return gemini_client(config["api_key"], config.get("base_url") or None, settings.PROVIDER_TIMEOUT_SECONDS)

    def _config(self, request: ChatRequest) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            system_instruction=request.system_prompt or None,
            temperature=request.temperature,
            max_output_tokens=request.max_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )

    async def _attempt(self, request: ChatRequest) -> AsyncIterator[str | Reasoning | Usage]:
        client = self._client()
        stream = await client.aio.models.generate_content_stream(
            model=request.model, contents=contents_for(request), config=self._config(request),
        )
        meta = None
        response_id = finish_reason = ""
        parts: list[str] = []
        thoughts: list[str] = []
        async for chunk in _pumped(stream):
            response_id = response_id or (pick(chunk, "response_id") or "")
            chunk_meta = pick(chunk, "usage_metadata")
            if chunk_meta is not None:
                meta = chunk_meta  # cumulative: the last one is the total
            for candidate in (pick(chunk, "candidates") or ())[:1]:
                finish_reason = _finish_reason(pick(candidate, "finish_reason")) or finish_reason
                for part in pick(candidate, "content", "parts") or ():
                    text = pick(part, "text")
                    if not isinstance(text, str) or not text:
                        continue
                    # Thought summaries are not the answer (their tokens are counted as thoughts).
                    if pick(part, "thought"):
                        thoughts.append(text)
                        yield Reasoning(text)
                    else:
                        parts.append(text)
                        yield text
        text, reasoning_text = "".join(parts), "".join(thoughts)
        if not finish_reason:
            partial = None if meta is None else usage_from_gemini(meta, request, text, response_id, "", reasoning_text)
            raise broken_off(self.name, partial)
        if meta is None:
            logger.info("gemini stream for %s ended without usage: estimating", request.model)
        yield usage_from_gemini(meta, request, text, response_id, finish_reason, reasoning_text)

    def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        return with_retries(lambda: self._attempt(request), classify_gemini_error)

    def list_models(self) -> list[Listing]:
        """Gemini's models that generate content, through the SDK's `models.list` (every page)."""
        config = settings.PROVIDERS.get(self.name) or {}
        if not config.get("api_key"):
            raise ProviderError("PROVIDER_ERROR", "The gemini provider has no API key configured.")
        timeout_ms = max(1, int(settings.CHATLIMA_CATALOGUE_TIMEOUT_SECONDS * 1000))
        listings = []
        with genai.Client(api_key=config["api_key"], http_options=types.HttpOptions(
                base_url=config.get("base_url") or None, timeout=timeout_ms)) as client:
            for model in client.models.list(config={"page_size": LIST_PAGE_SIZE}):
                if "generateContent" not in (pick(model, "supported_actions") or ()):
                    continue  # embeddings, image and speech models
                listings.append(Listing(model_id=(pick(model, "name") or "").removeprefix("models/"),
                                        display_name=pick(model, "display_name") or "",
                                        context_window=to_int(pick(model, "input_token_limit"))))
        return listings


    async def count_tokens(self, text: str, model: str) -> int:
        """Gemini's countTokens where it answers quickly; else, quietly, the estimator."""
        config = settings.PROVIDERS.get(self.name) or {}
        if config.get("api_key") and text:
            try:
                client = gemini_client(config["api_key"], config.get("base_url") or None,
                                       min(settings.PROVIDER_TIMEOUT_SECONDS, COUNT_TOKENS_TIMEOUT_SECONDS))
                async with asyncio.timeout(COUNT_TOKENS_TIMEOUT_SECONDS):
                    answer = await client.aio.models.count_tokens(model=model, contents=text)
                total = to_int(pick(answer, "total_tokens"))
                if total is not None:
                    return total
            except Exception:  # noqa: BLE001 - counting must never fail an exchange
                logger.debug("gemini countTokens unavailable, estimating", exc_info=True)
        return count_tokens(text, model)
