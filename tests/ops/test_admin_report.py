from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Sum

from tests.ops.conftest import make_log, user_in
from usage.models import ApiUsageLog, Budget, DailyUsageRollup
from usage.rollups import rollup_range

pytestmark = pytest.mark.django_db

REPORT = "/admin/usage/dailyusagerollup/report/"
START, END = date(2026, 5, 1), date(2026, 5, 7)


@pytest.fixture
def usage(db):
    alice = user_in("alice", "UTC")
    bob = user_in("bob", "Europe/Berlin")
    for n in range(6):
        at = datetime(2026, 5, 1 + n, 12, tzinfo=UTC)
        make_log(alice, at, prompt_tokens=100 * (n + 1), completion_tokens=10, cost_estimate=Decimal("0.01"))
        make_log(bob, at, provider="gemini", model_name="gemini-2.5-flash", prompt_tokens=1000, completion_tokens=500,
                 cost_estimate=Decimal("0.5"), actual_cost=Decimal("0.6"))
    make_log(alice, datetime(2026, 5, 3, 13, tzinfo=UTC), status=ApiUsageLog.Status.ERROR, prompt_tokens=5, completion_tokens=0)
    make_log(bob, datetime(2026, 5, 3, 14, tzinfo=UTC), status=ApiUsageLog.Status.CANCELLED, provider="gemini",
             model_name="gemini-2.5-flash", prompt_tokens=7, completion_tokens=3, cost_estimate=Decimal("0.001"))
    make_log(alice, datetime(2026, 6, 1, 12, tzinfo=UTC), prompt_tokens=99999)  # outside the range
    rollup_range(date(2026, 4, 30), date(2026, 6, 2))
    return alice, bob


def test_report_shows_totals_breakdowns_rates_and_a_chart_from_the_rollups(admin_client, usage):
    response = admin_client.get(REPORT, {"start": START.isoformat(), "end": END.isoformat()})
    assert response.status_code == 200
    report = response.context["report"]
    raw = ApiUsageLog.objects.filter(created_at__date__gte=START, created_at__date__lte=END).aggregate(
        requests=Count("id"), total_tokens=Sum("total_tokens"), cost=Sum("cost_estimate"), actual=Sum("actual_cost")
    )
    assert report.totals["requests"] == raw["requests"] == 14
    assert report.totals["total_tokens"] == raw["total_tokens"]
    assert report.totals["cost"] == raw["cost"]
    assert report.totals["actual_cost"] == raw["actual"] == Decimal("3.6")
    assert report.totals["error_rate"] == Decimal("7.1")  # 1 of 14
    assert report.totals["cancel_rate"] == Decimal("7.1")
    assert [row["provider"] for row in report.by_provider] == ["gemini", "openai"]
    assert [row["model_name"] for row in report.by_model] == ["gemini-2.5-flash", "gpt-4o-mini"]
    assert [row["user__username"] for row in report.by_user] == ["bob", "alice"]  # the top spender first
    assert len(report.days) == 7 and report.days[-1]["requests"] == 0
    assert report.days[2]["requests"] == 4
    html = response.content.decode()
    assert html.count('<rect class="bar"') == 7
    assert '<polyline class="cost"' in html
    assert "cdn" not in html.lower() and "<script src=\"http" not in html
    assert "Top spenders" in html and "Error rate" in html


def test_report_csv_exports_what_the_page_shows(admin_client, usage):
    response = admin_client.get(REPORT, {"start": START.isoformat(), "end": END.isoformat(), "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    total = next(r for r in rows if r["section"] == "total")
    assert int(total["requests"]) == 14
    assert Decimal(total["actual_cost"]) == Decimal("3.6")
    assert [r["key"] for r in rows if r["section"] == "user"] == ["bob", "alice"]
    assert [r["key"] for r in rows if r["section"] == "model"] == ["gemini/gemini-2.5-flash", "openai/gpt-4o-mini"]
    assert len([r for r in rows if r["section"] == "day"]) == 7
    by_day = {r["key"]: int(r["total_tokens"]) for r in rows if r["section"] == "day"}
    assert sum(by_day.values()) == int(total["total_tokens"])


def test_report_defaults_to_the_last_30_days_and_rejects_a_reversed_range(admin_client, usage):
    response = admin_client.get(REPORT)
    assert response.status_code == 200
    report = response.context["report"]
    assert (report.end - report.start).days == 29
    bad = admin_client.get(REPORT, {"start": "2026-05-07", "end": "2026-05-01"})
    assert bad.status_code == 200 and bad.context["report"] is None
    assert "must not be after" in bad.content.decode()


def test_report_and_admin_are_closed_to_non_staff(client, owner, stranger):
    assert client.get(REPORT).status_code == 302
    for user in (owner, stranger):
        client.force_login(user)
        response = client.get(REPORT)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        assert client.get(REPORT, {"format": "csv"}).status_code == 302


def test_changelist_links_to_the_report(admin_client, usage):
    assert REPORT in admin_client.get("/admin/usage/dailyusagerollup/").content.decode()


def test_usage_log_list_filters_by_user_status_provider_and_model(admin_client, usage):
    alice, _ = usage
    response = admin_client.get("/admin/usage/apiusagelog/", {"user__id__exact": alice.pk, "status__exact": "error"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    response = admin_client.get("/admin/usage/apiusagelog/", {"provider": "gemini", "model_name": "gemini-2.5-flash"})
    assert response.context["cl"].result_count == 7
    for path in ("/admin/chat/conversation/", "/admin/chat/message/"):
        assert admin_client.get(path, {"owner__id__exact": alice.pk}).status_code == 200


def test_usage_log_figures_are_read_only_and_prices_and_budgets_are_editable(admin_client, usage):
    log = ApiUsageLog.objects.first()
    page = admin_client.get(f"/admin/usage/apiusagelog/{log.pk}/change/").content.decode()
    assert 'name="prompt_tokens"' not in page
    from usage.models import ModelPrice

    price = ModelPrice.objects.first()
    if price is not None:
        assert 'name="input_per_mtok"' in admin_client.get(f"/admin/usage/modelprice/{price.pk}/change/").content.decode()
    budget = Budget.objects.get(user=usage[0])
    page = admin_client.get(f"/admin/usage/budget/{budget.pk}/change/").content.decode()
    assert 'name="token_limit"' in page and 'name="cost_limit"' in page and 'name="tokens_used"' not in page


def test_admin_action_resets_a_users_budget_period(admin_client, usage):
    alice, bob = usage
    now = datetime.now(UTC)
    Budget.objects.filter(user=alice).update(tokens_used=900, cost_used=Decimal("1.5"), alert_80_sent_at=now)
    Budget.objects.filter(user=bob).update(tokens_used=50)
    response = admin_client.post("/admin/usage/budget/", {
        "action": "reset_budget_period", "_selected_action": [Budget.objects.get(user=alice).pk],
    })
    assert response.status_code == 302
    alice_budget = Budget.objects.get(user=alice)
    assert (alice_budget.tokens_used, alice_budget.cost_used, alice_budget.alert_80_sent_at) == (0, 0, None)
    assert alice_budget.last_reset_at >= now - timedelta(seconds=5)
    assert Budget.objects.get(user=bob).tokens_used == 50


def test_rollups_cannot_be_typed_in(admin_client):
    assert admin_client.get("/admin/usage/dailyusagerollup/add/").status_code == 403
    assert DailyUsageRollup.objects.count() == 0


def test_usage_logs_cannot_be_added_by_hand(admin_client):
    assert admin_client.get("/admin/usage/apiusagelog/add/").status_code == 403
