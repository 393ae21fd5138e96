"""The gemini adapter through the real google-genai SDK against the fake Gemini server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chat import providers
from chat.providers.base import ChatRequest, ProviderError, Reasoning, Turn, Usage, estimate_usage
from usage.pricing import cost_of
from usage.tokens import count_tokens


def request(model="gemini-2.5-flash", message="Say hello", **kw) -> ChatRequest:
    return ChatRequest(model=model, message=message, **kw)


async def drain(stream) -> tuple[list[str], Usage]:
    """The answer deltas and the usage (reasoning deltas dropped)."""
    items = [item async for item in stream]
    assert isinstance(items[-1], Usage) and all(isinstance(i, (str, Reasoning)) for i in items[:-1])
    return [i for i in items[:-1] if isinstance(i, str)], items[-1]


async def test_streams_text_and_keeps_the_last_cumulative_usage(fake_gemini):
    fake_gemini.script(deltas=["Hel", "lo", " there"], thoughts=["Thinking about greetings"],
                       usage={"prompt": 1000, "candidates": 200, "thoughts": 300, "cached": 200},
                       response_id="resp-123")
    req = request(system_prompt="Be brief.", history=(Turn("user", "hi"), Turn("assistant", "hey")),
                  temperature=0.3, max_tokens=256)
    items = [item async for item in providers.get_provider("gemini").stream(req)]
    # The thought summary is reasoning, not answer text.
    assert items[0] == Reasoning("Thinking about greetings")
    deltas, usage = [i for i in items if isinstance(i, str)], items[-1]
    assert deltas == ["Hel", "lo", " there"]
    # Thoughts are output: completion = candidates + thoughts; the provider's total, never a sum of chunks.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 500, 1500)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (200, 300)
    assert usage.completion_id == "resp-123" and usage.finish_reason == "stop"
    assert usage.source == "provider" and usage.retries == 0

    sent = fake_gemini.last_request()
    # google-genai 3.x defaults to API version v1 (older releases used v1beta).
    assert sent.path in ("/v1/models/gemini-2.5-flash:streamGenerateContent",
                         "/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert sent.query == {"alt": ["sse"]}
    assert sent.headers["x-goog-api-key"] == "sk-fake-test-key"
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert [(c["role"], c["parts"][0]["text"]) for c in sent.body["contents"]] == [
        ("user", "hi"), ("model", "hey"), ("user", "Say hello")]
    assert sent.body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 256}


@pytest.mark.django_db
def test_cost_of_gemini_usage_matches_hand_computed_figure(fake_gemini):
    import asyncio

    fake_gemini.script(usage={"prompt": 1000, "candidates": 200, "thoughts": 300, "cached": 200})
    # A sync test, so the price lookup runs on the test's own database connection.
    _, usage = asyncio.run(drain(providers.get_provider("gemini").stream(request())))
    # 800 * 0.30 + 200 * 0.03 + 200 * 2.50 + 300 * 2.50 = 1496 per million
    assert cost_of("gemini-2.5-flash", usage) == Decimal("0.00149600")


async def test_provider_total_is_kept_and_what_it_holds_beyond_the_parts_is_output(fake_gemini):
    fake_gemini.script(usage={"prompt": 10, "candidates": 5, "thoughts": 20, "total": 37})
    _, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert usage.total_tokens == 37 and usage.completion_tokens == 27
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens


async def test_usage_on_the_last_text_chunk(fake_gemini):
    fake_gemini.script(deltas=["a", "b"], usage={"prompt": 4, "candidates": 2}, final_chunk_without_text=False)
    deltas, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert deltas == ["a", "b"] and (usage.prompt_tokens, usage.completion_tokens) == (4, 2)


async def test_max_tokens_finish_is_length(fake_gemini):
    fake_gemini.script(finish_reason="MAX_TOKENS")
    _, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert usage.finish_reason == "length"


async def test_stream_without_usage_metadata_is_estimated(fake_gemini):
    fake_gemini.script(deltas=["No", " usage"], include_usage=False)
    _, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert usage.is_estimate
    assert usage.completion_tokens == estimate_usage(request(), "No usage").completion_tokens


async def test_rate_limit_then_success_is_retried_and_counted(fake_gemini):
    fake_gemini.fail_next(429, retry_after=0)
    deltas, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert "".join(deltas) == "Hello from Gemini." and usage.retries == 1
    assert len(fake_gemini.requests) == 2


async def test_rate_limit_after_retry_budget_is_rate_limited(fake_gemini, settings):
    settings.PROVIDER_MAX_RETRIES = 1
    fake_gemini.fail_next(429, retry_after=0, times=3)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("gemini").stream(request()))
    assert caught.value.code == "RATE_LIMITED" and caught.value.retries == 1


async def test_retry_delay_in_error_details_is_honoured(fake_gemini, settings):
    settings.PROVIDER_RETRY_MAX_SECONDS = 5
    fake_gemini.fail_next(429, body={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow down",
                                               "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                            "retryDelay": "0.3s"}]}})
    import time

    started = time.perf_counter()
    _, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert time.perf_counter() - started >= 0.3 and usage.retries == 1


async def test_bad_request_is_provider_error_without_retry(fake_gemini):
    fake_gemini.fail_next(400)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("gemini").stream(request()))
    assert caught.value.code == "PROVIDER_ERROR" and len(fake_gemini.requests) == 1


async def test_no_answer_in_time_is_timeout(fake_gemini, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.2
    fake_gemini.stall_next(1.0)
    with pytest.raises(ProviderError) as caught:
        await drain(providers.get_provider("gemini").stream(request()))
    assert caught.value.code == "TIMEOUT"


async def test_connection_dropped_mid_stream_is_provider_error(fake_gemini):
    fake_gemini.disconnect_after(1)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in providers.get_provider("gemini").stream(request()):
            received.append(item)
    assert caught.value.code == "PROVIDER_ERROR" and received == ["Hello"]
    assert len(fake_gemini.requests) == 1


async def test_count_tokens_uses_gemini_when_it_answers_and_falls_back_quietly(fake_gemini):
    gemini = providers.get_provider("gemini")
    fake_gemini.count_tokens_answer = 42
    assert await gemini.count_tokens("some text to count", "gemini-2.5-flash") == 42
    assert fake_gemini.last_request().path.endswith("/models/gemini-2.5-flash:countTokens")
    fake_gemini.count_tokens_answer = None  # the fake answers 503
    assert await gemini.count_tokens("some text to count", "gemini-2.5-flash") == count_tokens(
        "some text to count", "gemini-2.5-flash")


async def test_closing_mid_answer_closes_the_http_stream(fake_gemini):
    fake_gemini.script(deltas=["one ", "two ", "three ", "four ", "five"])
    fake_gemini.slow_stream(0.05)
    stream = providers.get_provider("gemini").stream(request())
    assert await anext(stream) == "one "
    await stream.aclose()
    import asyncio

    assert await asyncio.to_thread(fake_gemini.client_gone.wait, 3)


async def test_tool_use_prompt_tokens_are_input(fake_gemini):
    # A server-side tool call: totalTokenCount 4301 = 1844 prompt + 1934 tool-use prompt + 432 + 91.
    fake_gemini.script(usage={"prompt": 1844, "tool_prompt": 1934, "candidates": 432, "thoughts": 91, "cached": 901})
    _, usage = await drain(providers.get_provider("gemini").stream(request()))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3778, 523, 4301)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (901, 91)


async def test_a_stream_without_a_finish_reason_broke_off_and_keeps_the_partial_usage(fake_gemini):
    fake_gemini.script(deltas=["Hel", "lo", " there"], usage={"prompt": 9, "candidates": 3})
    fake_gemini.end_after(2)
    received = []
    with pytest.raises(ProviderError) as caught:
        async for item in providers.get_provider("gemini").stream(request()):
            received.append(item)
    assert received == ["Hel", "lo"]
    assert caught.value.code == "PROVIDER_ERROR" and "broke off" in caught.value.message
    # What Gemini had counted when the stream stopped (its usage is cumulative).
    assert caught.value.usage.source == "provider" and caught.value.usage.prompt_tokens == 9
    assert len(fake_gemini.requests) == 1
