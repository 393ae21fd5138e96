"""Tolerant usage extraction and backoff: odd SDK shapes never crash an exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from email.utils import format_datetime

import openai.types.completion_usage as sdk_usage
from django.utils import timezone

from chat.providers.base import ChatRequest
from chat.providers.common import parse_retry_after, pick, retry_delay, to_decimal
from chat.providers.gemini import usage_from_gemini
from chat.providers.openai_compat import usage_from_openai

REQUEST = ChatRequest(model="gpt-4o", message="hello there")


class Exploding:
    def __getattr__(self, name):
        raise RuntimeError("boom")


class DumpOnly:
    __slots__ = ()

    def model_dump(self):
        return {"prompt_tokens": 8, "completion_tokens": 3}


def test_pick_reads_attributes_dicts_extras_and_dumps():
    sdk = sdk_usage.CompletionUsage.model_validate({
        "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 6}, "cost": 0.0021,
    })
    assert pick(sdk, "prompt_tokens_details", "cached_tokens") == 6
    assert pick(sdk, "cost") == 0.0021  # an extra field the SDK does not declare
    assert pick({"a": {"b": 2}}, "a", "b") == 2
    assert pick(DumpOnly(), "prompt_tokens") == 8
    assert pick(None, "x") is None and pick({"a": None}, "a", "b") is None
    assert pick(Exploding(), "prompt_tokens") is None


def test_usage_from_a_plain_dict_is_the_providers():
    usage = usage_from_openai({"prompt_tokens": 10, "completion_tokens": 5,
                               "completion_tokens_details": {"reasoning_tokens": 2}, "cost": "0.5"},
                              REQUEST, "answer", "id-1", "stop")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    assert usage.reasoning_tokens == 2 and usage.actual_cost == Decimal("0.5") and usage.source == "provider"


def test_unreadable_usage_falls_back_to_a_marked_estimate():
    for raw in (None, Exploding(), {"unexpected": True}, "garbage", 42):
        usage = usage_from_openai(raw, REQUEST, "some answer", "id-2", "stop")
        assert usage.is_estimate and usage.completion_tokens > 0 and usage.completion_id == "id-2"
        assert usage_from_gemini(raw, REQUEST, "some answer", "r", "stop").is_estimate


def test_gemini_usage_from_a_dict_counts_thoughts_as_output():
    usage = usage_from_gemini({"prompt_token_count": 7, "candidates_token_count": 3, "thoughts_token_count": 11,
                               "total_token_count": 21}, REQUEST, "x", "r", "stop")
    assert (usage.completion_tokens, usage.reasoning_tokens, usage.total_tokens) == (14, 11, 21)


def test_money_never_goes_through_binary_float():
    assert to_decimal(0.1) == Decimal("0.1")  # Decimal(0.1) would be 0.1000000000000000055...
    assert to_decimal("0.00000075") == Decimal("0.00000075")
    assert to_decimal(3) == Decimal(3)
    assert to_decimal("n/a") is None and to_decimal(None) is None and to_decimal(True) is None


def test_retry_after_in_seconds_milliseconds_or_a_date():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    later = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": later}) <= 30
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None


def test_backoff_grows_with_jitter_and_is_capped(settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.5
    settings.PROVIDER_RETRY_MAX_SECONDS = 3
    for attempt, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (5, 3.0)):
        delays = [retry_delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered across the range, not a constant
    assert retry_delay(0, 1.5) == 1.5  # the server's Retry-After wins
    assert retry_delay(0, 60) == 3  # but never beyond the cap
