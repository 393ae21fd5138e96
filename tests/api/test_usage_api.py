"""The usage API: each answer limited to the caller's own rows, costs as decimal strings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from chat.models import Conversation
from usage.models import ApiUsageLog, DailyUsageRollup

pytestmark = pytest.mark.django_db


def log(user, request_id, *, when, model="gpt-4o-mini", provider="openai", prompt=10, completion=20, cost="0.000015", status="success", conversation=None):
    return ApiUsageLog.objects.create(
        user=user, request_id=request_id, provider=provider, model_name=model, prompt_tokens=prompt,
        completion_tokens=completion, total_tokens=prompt + completion, cost_estimate=Decimal(cost), status=status,
        usage_source="provider", created_at=when, conversation=conversation, metadata={"retries": 0},
    )


@pytest.fixture
def rows(owner, stranger):
    conv = Conversation.objects.create(owner=owner, public_id="conv_1")
    log(owner, "msg_1", when=datetime(2025, 7, 21, 10, tzinfo=UTC), conversation=conv)
    log(owner, "msg_2", when=datetime(2025, 7, 22, 9, tzinfo=UTC), cost="0.000100")
    log(owner, "msg_3", when=datetime(2025, 7, 22, 23, tzinfo=UTC), status="timeout", prompt=5, completion=0, cost="0")
    log(owner, "msg_4", when=datetime(2025, 7, 22, 12, tzinfo=UTC), model="gemini-2.5-flash", provider="gemini", cost="0.000200")
    log(stranger, "msg_1", when=datetime(2025, 7, 22, 9, tzinfo=UTC), cost="9.000000")
    return conv


def test_stats_group_the_callers_rows_by_model(owner_api, rows):
    stats = owner_api.get("/api/v1/usage/stats").json()["stats"]
    assert stats == [
        {"provider": "gemini", "model_name": "gemini-2.5-flash", "total_requests": 1, "error_count": 0,
         "total_prompt_tokens": 10, "total_completion_tokens": 20, "total_tokens": 30, "total_cost": "0.00020000",
         "avg_tokens_per_request": 30.0},
        {"provider": "openai", "model_name": "gpt-4o-mini", "total_requests": 3, "error_count": 1,
         "total_prompt_tokens": 25, "total_completion_tokens": 40, "total_tokens": 65, "total_cost": "0.00011500",
         "avg_tokens_per_request": 21.67},
    ]


def test_stats_and_history_filter_by_dates(owner_api, rows):
    stats = owner_api.get("/api/v1/usage/stats", {"start_date": "2025-07-22", "end_date": "2025-07-22"}).json()["stats"]
    assert sum(s["total_requests"] for s in stats) == 3
    history = owner_api.get("/api/v1/usage/history", {"start_date": "2025-07-22T10:00:00Z"}).json()
    assert [r["request_id"] for r in history["history"]] == ["msg_3", "msg_4"]
    assert history["count"] == 2


def test_history_pages_newest_first_with_a_count(owner_api, rows):
    page = owner_api.get("/api/v1/usage/history", {"limit": 2, "offset": 1}).json()
    assert page["count"] == 4
    assert [r["request_id"] for r in page["history"]] == ["msg_4", "msg_2"]
    oldest = owner_api.get("/api/v1/usage/history", {"limit": 1, "offset": 3}).json()["history"][0]
    assert (oldest["conversation_id"], oldest["cost_estimate"], oldest["created_at"]) == (
        "conv_1", "0.00001500", "2025-07-21T10:00:00.000Z"
    )


@pytest.mark.parametrize(
    "url, params",
    [
        ("/api/v1/usage/stats", {"start_date": "yesterday"}),
        ("/api/v1/usage/history", {"end_date": "2025-13-01"}),
        ("/api/v1/usage/history", {"limit": "lots"}),
        ("/api/v1/usage/history", {"limit": 0}),
        ("/api/v1/usage/daily", {"start_date": "2025-07-22", "end_date": "2025-07-01"}),
        ("/api/v1/usage/daily", {"start_date": "2020-01-01", "end_date": "2025-01-01"}),
        ("/api/v1/usage/export.csv", {"start_date": "22/07/2025"}),
    ],
)
def test_bad_dates_and_paging_are_a_400(owner_api, url, params):
    response = owner_api.get(url, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"


def test_token_usage_per_conversation_and_account(owner_api, stranger_api, owner, stranger):
    Conversation.objects.create(owner=owner, public_id="conv_1", input_tokens=32, output_tokens=120, total_tokens=152,
                                estimated_cost=Decimal("0.000309"), message_count=2)
    Conversation.objects.create(owner=owner, public_id="conv_2", input_tokens=8, output_tokens=2, total_tokens=10,
                                estimated_cost=Decimal("0.000001"), message_count=2, actual_cost=Decimal("0.000002"))
    Conversation.objects.create(owner=stranger, public_id="conv_1", input_tokens=999, total_tokens=999, message_count=9)
    one = owner_api.get("/api/v1/token-usage", {"conversation_id": "conv_1"}).json()
    assert (one["total_input_tokens"], one["total_output_tokens"], one["total_tokens"]) == (32, 120, 152)
    assert (one["total_estimated_cost"], one["total_actual_cost"], one["currency"]) == ("0.00030900", None, "USD")
    account = owner_api.get("/api/v1/token-usage").json()
    assert (account["total_input_tokens"], account["total_tokens"], account["message_count"]) == (40, 162, 4)
    assert (account["total_estimated_cost"], account["total_actual_cost"]) == ("0.00031000", "0.00000200")
    assert stranger_api.get("/api/v1/token-usage").json()["total_input_tokens"] == 999


def test_daily_reads_the_callers_rollups(owner_api, owner, stranger):
    for user, cost in ((owner, "0.5"), (stranger, "7")):
        DailyUsageRollup.objects.create(day=date(2025, 7, 22), user=user, provider="openai", model_name="gpt-4o",
                                        requests=3, prompt_tokens=30, completion_tokens=60, total_tokens=90, cost=Decimal(cost))
    DailyUsageRollup.objects.create(day=date(2025, 6, 1), user=owner, provider="openai", model_name="gpt-4o", requests=1)
    days = owner_api.get("/api/v1/usage/daily", {"start_date": "2025-07-01", "end_date": "2025-07-31"}).json()["days"]
    assert [(d["date"], d["model_name"], d["requests"], d["total_tokens"], d["cost"]) for d in days] == [
        ("2025-07-22", "gpt-4o", 3, 90, "0.50000000")
    ]


def test_daily_days_are_the_users_days(owner_api, owner):
    owner.timezone = "Asia/Tokyo"
    owner.save()
    DailyUsageRollup.objects.create(day=date(2025, 7, 23), user=owner, provider="openai", model_name="gpt-4o", requests=1)
    # 20:00 UTC on the 22nd is already the 23rd in Tokyo.
    days = owner_api.get("/api/v1/usage/daily", {"start_date": "2025-07-22T20:00:00Z", "end_date": "2025-07-22T21:00:00Z"}).json()
    assert [d["date"] for d in days["days"]] == ["2025-07-23"]


def test_export_streams_only_the_callers_rows_as_csv(owner_api, rows):
    response = owner_api.get("/api/v1/usage/export.csv", {"start_date": "2025-07-22"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["request_id"] for r in table] == ["msg_3", "msg_4", "msg_2"]
    assert table[2]["cost_estimate"] == "0.00010000"
    assert "9.00000000" not in {r["cost_estimate"] for r in table}
    assert table[0]["metadata"] == '{"retries": 0}'


def test_models_lists_prices_and_flips_available_with_a_key(owner_api, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "", "base_url": None}}
    catalogue = owner_api.get("/api/v1/models").json()
    by_id = {m["id"]: m for m in catalogue["models"]}
    assert catalogue["default"] == settings.CHATLIMA_DEFAULT_MODEL
    assert by_id["offline-demo"]["available"] is True
    assert by_id["gpt-4o-mini"]["available"] is False
    assert by_id["gpt-4o-mini"]["pricing"]["input_per_mtok"] == "0.15"
    assert by_id["gemini-2.5-flash"]["pricing"] == {
        "currency": "USD", "input_per_mtok": "0.30", "output_per_mtok": "2.50", "cached_input_per_mtok": "0.03",
        "reasoning_per_mtok": "2.50", "cache_write_per_mtok": None, "effective_date": None,
        "source": "genai-prices",
    }
    assert by_id["offline-demo"]["pricing"]["source"] == "free"
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "sk-test", "base_url": None}}
    by_id = {m["id"]: m for m in owner_api.get("/api/v1/models").json()["models"]}
    assert by_id["gpt-4o-mini"]["available"] is True


def test_usage_endpoints_need_credentials(client):
    for url in ("/api/v1/models", "/api/v1/token-usage", "/api/v1/usage/stats", "/api/v1/usage/history",
                "/api/v1/usage/daily", "/api/v1/usage/export.csv"):
        assert client.get(url).status_code == 401, url


def test_api_users_are_throttled(owner_api, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "user", "3/min")
    codes = [owner_api.get(url).status_code for url in ("/api/v1/models", "/api/v1/usage/stats", "/api/v1/conversations", "/api/v1/token-usage")]
    assert codes == [200, 200, 200, 429]
    assert owner_api.get("/api/v1/usage/history").json()["error"]["code"] == "RATE_LIMITED"
