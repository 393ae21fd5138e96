"""The openai and openrouter adapters through the real openai SDK against the fake server."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from chat import providers
from chat.providers.base import ChatRequest, ProviderError, Reasoning, Turn, Usage, estimate_usage
from usage.pricing import cost_of


def request(model="gpt-4o", message="Say hello", **kw) -> ChatRequest:
    return ChatRequest(model=model, message=message, **kw)


async def drain(stream) -> tuple[list[str], Usage]:
    """The answer deltas and the usage (reasoning deltas dropped)."""
    items = [item async for item in stream]
    assert isinstance(items[-1], Usage) and all(isinstance(i, (str, Reasoning)) for i in items[:-1])
    return [i for i in items[:-1] if isinstance(i, str)], items[-1]


async def test_streams_deltas_and_reads_cached_and_reasoning_usage(fake_openai):
    fake_openai.script(deltas=["Hel", "lo", " there"], usage={
        "prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 400, "reasoning_tokens": 100,
    }, completion_id="chatcmpl-abc")
    req = request(system_prompt="Be brief.", history=(Turn("user", "hi"), Turn("assistant", "hey")),
                  temperature=0.2, max_tokens=64)
    deltas, usage = await drain(providers.get_provider("openai").stream(req))
    assert deltas == ["Hel", "lo", " there"]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 500, 1500)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (400, 100)
    assert usage.source == "provider" and usage.retries == 0
    assert usage.completion_id == "chatcmpl-abc" and usage.finish_reason == "stop"
    assert usage.actual_cost is None

    sent = fake_openai.last_request()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-fake-test-key"
    assert sent.body["model"] == "gpt-4o" and sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    # A compatible server at a custom base URL gets the classic `max_tokens`.
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 64
    assert "max_completion_tokens" not in sent.body
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"}, {"role": "user", "content": "Say hello"},
    ]


@pytest.mark.django_db
def test_cost_of_provider_usage_matches_hand_computed_figure(fake_openai):
    fake_openai.script(usage={"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 400})
    # A sync test, so the price lookup runs on the test's own database connection.
    _, usage = asyncio.run(drain(providers.get_provider("openai").stream(request())))
    # gpt-4o: 600 * 2.50 + 400 * 1.25 + 500 * 10.00 = 7000 per million -> 0.007
    assert cost_of("gpt-4o", usage) == Decimal("0.00700000")


async def test_openrouter_asks_for_usage_accounting_and_reads_billed_cost(fake_openrouter):
    fake_openrouter.script(deltas=["Hi"], comments=True, usage={
        "prompt_tokens": 20, "completion_tokens": 3, "cached_tokens": 0, "cost": 0.000123456789,
    })
    _, usage = await drain(providers.get_provider("openrouter").stream(request("moonshotai/kimi-k2")))
    assert usage.actual_cost == Decimal("0.000123456789")
    assert isinstance(usage.actual_cost, Decimal)
    sent = fake_openrouter.last_request().body
    assert sent["usage"] == {"include": True} and "max_tokens" not in sent
    assert sent["stream_options"] == {"include_usage": True}


async def test_openrouter_cost_sent_as_string_is_exact(fake_openrouter):
    fake_openrouter.script(usage={"prompt_tokens": 5, "completion_tokens": 1, "cost": "0.00000075"})
    _, usage = await drain(providers.get_provider("openrouter").stream(request("moonshotai/kimi-k2", max_tokens=9)))
    assert usage.actual_cost == Decimal("0.00000075")
    assert fake_openrouter.last_request().body["max_tokens"] == 9


async def test_usage_on_the_last_content_chunk_is_read_too(fake_openai):
    fake_openai.script(deltas=["a", "b"], usage={"prompt_tokens": 7, "completion_tokens": 2},
                       usage_on_last_content_chunk=True)
    deltas, usage = await drain(providers.get_provider("openai").stream(request()))
    assert deltas == ["a", "b"] and usage.source == "provider" and usage.prompt_tokens == 7


async def test_stream_without_usage_chunk_is_estimated_and_marked(fake_openai):
    fake_openai.script(deltas=["Some", " words", " here."], include_usage=False)
    deltas, usage = await drain(providers.get_provider("openai").stream(request()))
    assert usage.is_estimate
    expected = estimate_usage(request(), "Some words here.")
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert usage.completion_id == "chatcmpl-fake123"


async def test_rate_limit_then_success_is_retried_and_counted(fake_openai):
    fake_openai.fail_next(429, retry_after=0, times=2)
    deltas, usage = await drain(providers.get_provider("openai").stream(request()))
    assert "".join(deltas) == "Hello from the fake."
    assert usage.retries == 2
    assert len(fake_openai.requests) == 3


async def test_server_error_is_retried_with_backoff(fake_openai):
    fake_openai.fail_next(503)
    _, usage = await drain(providers.get_provider("openai").stream(request()))
    assert usage.retries == 1 and len(fake_openai.requests) == 2


async def test_retry_after_is_honoured(fake_openai, settings):
    settings.PROVIDER_RETRY_MAX_SECONDS = 5
    fake_openai.fail_next(429, retry_after=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, usage = await drain(providers.get_provider("openai").stream(request()))
    assert loop.time() - started >= 0.3
    assert usage.retries == 1


async def test_rate_limit_after_retry_budget_is_rate_limited(fake_openai, settings):
    settings.PROVIDER_MAX_RETRIES = 2
    fake_openai.fail_next(429, retry_after=0, times=5)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("openai").stream(request()))
    assert caught.value.code == "RATE_LIMITED" and caught.value.retries == 2
    assert len(fake_openai.requests) == 3


async def test_client_error_is_not_retried(fake_openai):
    fake_openai.fail_next(400)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("openai").stream(request()))
    assert caught.value.code == "PROVIDER_ERROR" and len(fake_openai.requests) == 1


async def test_no_answer_in_time_is_timeout(fake_openai, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.2
    fake_openai.stall_next(1.0)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("openai").stream(request()))
    assert caught.value.code == "TIMEOUT"


async def test_stream_going_quiet_mid_answer_is_timeout(fake_openai, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5  # room for the first event even on a loaded machine
    fake_openai.slow_stream(2.0)
    stream = providers.get_provider("openai").stream(request())
    assert await anext(stream) == "Hello"
    with pytest.raises(ProviderError) as caught:
        await anext(stream)
    assert caught.value.code == "TIMEOUT"


async def test_connection_dropped_mid_stream_is_provider_error_without_retry(fake_openai):
    fake_openai.disconnect_after(2)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in providers.get_provider("openai").stream(request()):
            received.append(item)
    assert caught.value.code == "PROVIDER_ERROR"
    assert received == ["Hello", " from"]
    assert len(fake_openai.requests) == 1


async def test_connection_dropped_before_any_delta_is_retried(fake_openai):
    fake_openai.disconnect_after(0)
    deltas, usage = await drain(providers.get_provider("openai").stream(request()))
    assert "".join(deltas) == "Hello from the fake." and usage.retries == 1


async def test_unreachable_server_is_provider_error(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "k", "base_url": "http://127.0.0.1:9/v1"}}
    settings.PROVIDER_MAX_RETRIES = 1
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.001
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("openai").stream(request()))
    assert caught.value.code == "PROVIDER_ERROR" and caught.value.retries == 1


async def test_closing_the_stream_early_closes_it_cleanly(fake_openai):
    stream = providers.get_provider("openai").stream(request())
    assert await anext(stream) == "Hello"
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_missing_key_is_provider_error(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "", "base_url": None}}
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("openai").stream(request()))
    assert caught.value.code == "PROVIDER_ERROR"


async def test_cancelling_mid_answer_closes_the_http_stream(fake_openai):
    fake_openai.slow_stream(0.4)  # long enough that the cancel always lands while waiting
    stream = providers.get_provider("openai").stream(request())
    assert await anext(stream) == "Hello"
    task = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    # The fake sees its client go away while it still had events to send.
    assert await asyncio.to_thread(fake_openai.client_gone.wait, 3)


def test_openai_itself_gets_max_completion_tokens(settings):
    from chat.providers.openai import OpenAIProvider

    provider = OpenAIProvider()
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "k", "base_url": None}}
    assert "max_completion_tokens" in provider._create_kwargs(request(max_tokens=5))
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "k", "base_url": "https://api.openai.com/v1"}}
    assert provider._create_kwargs(request(max_tokens=5))["max_completion_tokens"] == 5


# --- reporting styles seen in real recordings (shared/provider-recordings) ---------------------


async def test_reasoning_reported_outside_completion_tokens_joins_the_completion(fake_openai):
    # xAI: completion_tokens 2 excludes reasoning 340; the total 354 holds both.
    fake_openai.script(deltas=["Hi"], reasoning=["First, ", "think."],
                       usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 354,
                              "reasoning_tokens": 340, "cached_tokens": 11})
    _, usage = await drain(providers.get_provider("openai").stream(request()))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 342, 354)
    assert (usage.reasoning_tokens, usage.cached_tokens) == (340, 11)


async def test_reasoning_deltas_are_not_answer_text(fake_openai):
    fake_openai.script(deltas=["Answer."], reasoning=["Let me ", "think"], reasoning_key="reasoning")
    items = [item async for item in providers.get_provider("openai").stream(request())]
    assert items[:2] == [Reasoning("Let me "), Reasoning("think")]
    assert [i for i in items if isinstance(i, str)] == ["Answer."]


async def test_an_error_chunk_keeps_the_usage_it_carries_and_is_not_retried(fake_openrouter):
    # OpenRouter: reasoning streamed, then one chunk with BOTH an error and the billed usage.
    fake_openrouter.script(deltas=[], reasoning=["We need", " to respond"], reasoning_key="reasoning",
                           usage={"prompt_tokens": 43, "completion_tokens": 10, "total_tokens": 53,
                                  "reasoning_tokens": 11, "cost": 0},
                           error_chunk={"code": 400, "message": "Token limit reached"})
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in providers.get_provider("openrouter").stream(request(model="minimax/minimax-m2:free")):
            received.append(item)
    assert received == [Reasoning("We need"), Reasoning(" to respond")]
    assert caught.value.code == "PROVIDER_ERROR" and "Token limit reached" in caught.value.message
    usage = caught.value.usage
    assert usage is not None and usage.source == "provider"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens) == (43, 10, 53, 10)
    assert usage.actual_cost == Decimal("0")
    assert len(fake_openrouter.requests) == 1


async def test_a_drop_after_reasoning_only_is_not_retried(fake_openai):
    fake_openai.script(deltas=["Answer"], reasoning=["Hmm", " let me see"])
    fake_openai.disconnect_after(2)
    with pytest.raises(ProviderError) as caught:
        async for _ in providers.get_provider("openai").stream(request()):
            pass
    assert caught.value.code == "PROVIDER_ERROR" and caught.value.usage is None
    assert len(fake_openai.requests) == 1


async def test_a_stream_that_ends_without_finish_or_usage_broke_off(fake_openai):
    # The body ends cleanly (no connection error) but with no finish reason, no usage, no [DONE].
    fake_openai.end_after(2)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in providers.get_provider("openai").stream(request()):
            received.append(item)
    assert received == ["Hello", " from"]
    assert caught.value.code == "PROVIDER_ERROR" and "broke off" in caught.value.message
    assert len(fake_openai.requests) == 1
