"""The offline demo model: deterministic, word by word, paced by settings, honest estimated usage."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from chat import providers
from chat.providers.base import ChatRequest, Turn, Usage, estimate_prompt_tokens, estimate_usage
from chat.providers.offline import demo_answer


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0


def request(message="How do budgets work?", **kw) -> ChatRequest:
    return ChatRequest(model="offline-demo", message=message, **kw)


async def drain(stream):
    items = [item async for item in stream]
    return [i for i in items if isinstance(i, str)], items[-1]


async def test_streams_words_and_ends_with_one_estimated_usage():
    deltas, usage = await drain(providers.get_provider("offline").stream(request()))
    text = "".join(deltas)
    assert text == demo_answer(request())
    assert len(deltas) > 20
    # Each delta is one word and the whitespace after it.
    assert all(re.fullmatch(r"\s*\S+\s*", d) for d in deltas)
    assert isinstance(usage, Usage) and usage.is_estimate
    assert usage.finish_reason == "stop"
    assert re.fullmatch(r"offline-[0-9a-f]+", usage.completion_id)
    assert usage.prompt_tokens == estimate_prompt_tokens(request())
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_answer_echoes_the_question_in_markdown_and_is_deterministic():
    req = request("What does a **budget** cost?\nSecond line")
    first, _ = await drain(providers.get_provider("offline").stream(req))
    second, _ = await drain(providers.get_provider("offline").stream(req))
    text = "".join(first)
    assert text == "".join(second)
    assert "> What does a **budget** cost?\n> Second line" in text
    assert "**Budgets.**" in text and "**Costs.**" in text


async def test_max_tokens_stops_early_with_length():
    deltas, usage = await drain(providers.get_provider("offline").stream(request(max_tokens=12)))
    assert usage.finish_reason == "length"
    assert 0 < usage.completion_tokens <= 12
    assert len("".join(deltas)) < len(demo_answer(request()))


async def test_pace_comes_from_settings_at_call_time(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 5
    started = time.perf_counter()
    deltas, _ = await drain(providers.get_provider("offline").stream(request(max_tokens=8)))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.005 * (len(deltas) - 1)


async def test_aclose_stops_the_stream_promptly(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 1000
    stream = providers.get_provider("offline").stream(request())
    assert isinstance(await anext(stream), str)
    started = time.perf_counter()
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert time.perf_counter() - started < 0.5


def test_prompt_estimate_counts_system_prompt_history_and_overhead():
    bare = estimate_prompt_tokens(request("hi"))
    with_system = estimate_prompt_tokens(request("hi", system_prompt="Be brief."))
    with_history = estimate_prompt_tokens(request("hi", history=(Turn("user", "hello"), Turn("assistant", "hey"))))
    assert with_system > bare and with_history > bare
    # Even an empty turn costs its per-message overhead.
    assert estimate_prompt_tokens(request("hi", history=(Turn("user", ""),))) > bare


def test_estimate_usage_is_marked_as_estimate():
    usage = estimate_usage(request("hi"), "Hello there, friend.")
    assert usage.is_estimate
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.django_db
def test_registry_maps_models_to_providers():
    assert providers.provider_name_for_model("offline-demo") == "offline"
    assert providers.provider_name_for_model("gemini-2.5-flash") == "gemini"
    assert providers.provider_name_for_model("moonshotai/kimi-k2") == "openrouter"
    assert providers.provider_name_for_model("no-such-model") is None
    assert providers.provider_is_configured("offline")
    assert providers.get_provider("offline") is providers.get_provider("offline")
    with pytest.raises(providers.ProviderError):
        providers.get_provider("nonsense")
