from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import bearer_client
from tests.ops.conftest import make_log
from usage import tokens

pytestmark = pytest.mark.django_db


def test_health_reports_every_check_ok(client, settings):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"] == "ok"
    assert body["checks"]["broker"] == ("ok" if settings.REDIS_URL else "not configured")


def test_health_is_unhealthy_with_503_when_the_broker_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["broker"] == "error"
    assert response.json()["checks"]["database"] == "ok"


def test_stats_totals_across_users_with_token_cache_figures(staff, owner, stranger):
    make_log(owner, datetime(2026, 1, 2, tzinfo=UTC), prompt_tokens=10, completion_tokens=5, cost_estimate=Decimal("0.5"))
    make_log(stranger, datetime(2026, 1, 3, tzinfo=UTC), prompt_tokens=20, completion_tokens=1, cost_estimate=Decimal("0.25"))
    tokens.count_tokens("a text never counted before in this process: stats test")
    tokens.count_tokens("a text never counted before in this process: stats test")
    response = bearer_client(staff).get("/api/v1/stats")
    assert response.status_code == 200
    body = response.json()
    assert body["users"] == 3
    assert body["requests"] == 2
    assert body["total_tokens"] == 36
    assert body["total_prompt_tokens"] == 30
    assert Decimal(body["total_estimated_cost"]) == Decimal("0.75")
    cache = tokens.cache_stats()
    assert body["token_cache"] == {"hits": cache["hits"], "misses": cache["misses"], "entries": cache["entries"]}
    assert body["hits"] >= 1 and body["entries"] >= 1


def test_stats_is_for_staff_only(client, owner_api, stranger_api):
    assert client.get("/api/v1/stats").status_code == 401
    for api in (owner_api, stranger_api):
        response = api.get("/api/v1/stats")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"


def test_health_is_unhealthy_when_the_database_cannot_answer(client, monkeypatch):
    from django.db import OperationalError

    from chatlima import ops as ops_views

    def database_down() -> str:
        raise OperationalError("connection refused")

    monkeypatch.setattr(ops_views, "_check_database", database_down)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert (body["checks"]["database"], body["checks"]["channel_layer"]) == ("error", "ok")
