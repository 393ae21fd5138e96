"""One figure, one value: the API doors, the dashboard and the admin report agree on error counts and money.

The status decision (usage.models.ApiUsageLog): an error is error, timeout, rate_limited or
interrupted; cancelled is counted apart and is never an error; pending is neither, and a request
count counts every finished (not pending) row. Money leaves the server as plain 8-place decimal
strings (usage.pricing.money_str) and pages show it by one display rule (usage.charts.money_display).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from chat.models import Conversation
from tests.conftest import bearer_client, make_user
from usage.models import ApiUsageLog, Budget
from usage.rollups import rollup_range

pytestmark = pytest.mark.django_db

REPORT = "/admin/usage/dailyusagerollup/report/"
# The decision, spelled out here so the test pins it rather than reading it from the code.
ERROR_STATUSES = {"error", "timeout", "rate_limited", "interrupted"}
MONEY = re.compile(r"^\d+\.\d{8}$")
EXPONENT = re.compile(r"\dE[-+]\d")  # how Decimal spells 0E-8; uuids are lower case


def some_day(days_ago: int) -> datetime:
    day = timezone.now().astimezone(UTC).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(12), UTC)


def utc_user(username: str) -> User:
    user = make_user(username)
    User.objects.filter(pk=user.pk).update(timezone="UTC")
    user.refresh_from_db()
    return user


def log(user: User, n: int, when: datetime, status: str, *, model: str = "gpt-4o-mini", provider: str = "openai",
        prompt: int = 10, completion: int = 20, cost: str | None = "0.00012345", source: str = "provider",
        conversation: Conversation | None = None) -> ApiUsageLog:
    return ApiUsageLog.objects.create(
        user=user, request_id=f"msg_agree_{n:04d}", provider=provider, model_name=model, prompt_tokens=prompt,
        completion_tokens=completion, total_tokens=prompt + completion,
        cost_estimate=None if cost is None else Decimal(cost), status=status, usage_source=source,
        created_at=when + timedelta(minutes=n), conversation=conversation, metadata={"retries": 0},
    )


def dashboard_total(html: str, name: str) -> str:
    """A dashboard total; for money, the exact figure it carries (shown short, exact on hover and focus)."""
    marker = f'<dd data-total="{name}">'
    start = html.index(marker) + len(marker)
    shown = html[start:html.index("</dd>", start)].strip()
    exact = re.search(r'data-exact="([^"]*)"', shown)
    return exact.group(1) if exact else shown


def report_figure(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found, f"no {pattern!r} in the admin report"
    return found.group(1)


@pytest.fixture
def staff_client(db) -> Client:
    admin = make_user("reporter")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    return client


def pages(user: User, staff_client: Client, day: str) -> tuple[str, str]:
    owner_client = Client()
    owner_client.force_login(user)
    dashboard = owner_client.get("/usage/", {"start_date": day, "end_date": day})
    report = staff_client.get(REPORT, {"start": day, "end": day})
    assert dashboard.status_code == 200 and report.status_code == 200
    return dashboard.content.decode(), report.content.decode()


def test_error_count_is_the_same_in_the_stats_api_the_dashboard_and_the_admin_report(staff_client):
    user = utc_user("counter")
    when = some_day(2)
    statuses = ["success", "success", "error", "error", "timeout", "rate_limited", "cancelled", "interrupted", "pending"]
    for n, status in enumerate(statuses):
        failed_early = status in ("error", "timeout", "rate_limited")  # nothing arrived: nothing charged
        cost = None if status == "pending" else "0" if failed_early else "0.00012345"
        log(user, n, when, status, cost=cost, prompt=0 if failed_early else 10, completion=0 if failed_early else 20,
            source="none" if failed_early else "provider")
    # A free model's row, cost 0: counted like any other.
    log(user, 50, when, "success", model="offline-demo", provider="offline", cost="0")
    rollup_range(when.date() - timedelta(days=1), when.date() + timedelta(days=1))

    rows = list(ApiUsageLog.objects.filter(user=user).values_list("status", flat=True))
    decided_errors = sum(status in ERROR_STATUSES for status in rows)
    decided_cancelled = rows.count("cancelled")
    decided_requests = sum(status != "pending" for status in rows)
    assert (decided_errors, decided_cancelled, decided_requests) == (5, 1, 9)

    day = when.date().isoformat()
    api = bearer_client(user)
    stats = api.get("/api/v1/usage/stats", {"start_date": day, "end_date": day}).json()["stats"]
    daily = api.get("/api/v1/usage/daily", {"start_date": day, "end_date": day}).json()["days"]
    dashboard, report = pages(user, staff_client, day)
    dashboard_errors, dashboard_cancelled = (int(x) for x in dashboard_total(dashboard, "errors").split(" / "))

    errors = {
        "stats": sum(row["error_count"] for row in stats),
        "daily": sum(row["errors"] for row in daily),
        "dashboard": dashboard_errors,
        "admin report": int(report_figure(report, r"Error rate<strong>[^<]*</strong>\s*([\d,]+) errors").replace(",", "")),
    }
    assert errors == dict.fromkeys(errors, decided_errors)

    requests = {
        "stats": sum(row["total_requests"] for row in stats),
        "daily": sum(row["requests"] for row in daily),
        "dashboard": int(dashboard_total(dashboard, "requests")),
        "admin report": int(report_figure(report, r"Requests<strong>([\d,]+)</strong>").replace(",", "")),
    }
    assert requests == dict.fromkeys(requests, decided_requests)

    cancelled = {
        "dashboard": dashboard_cancelled,
        "admin report": int(report_figure(report, r"([\d,]+) cancelled").replace(",", "")),
    }
    assert cancelled == dict.fromkeys(cancelled, decided_cancelled)


def test_free_model_costs_are_plain_decimal_strings_and_pages_show_money_alike(staff_client):
    user = utc_user("freeloader")
    Budget.objects.filter(user=user).update(cost_limit=Decimal("5"))
    conversation = Conversation.objects.create(owner=user, public_id="conv_free", model="offline-demo")
    free_day, paid_day = some_day(3), some_day(2)
    log(user, 1, free_day, "success", model="offline-demo", provider="offline", cost="0", conversation=conversation)
    log(user, 2, free_day, "cancelled", model="offline-demo", provider="offline", cost="0", source="estimate")
    log(user, 3, paid_day, "success", cost="0.00012345")
    log(user, 4, paid_day, "success", model="gpt-4o", cost="1234.5")
    rollup_range(free_day.date() - timedelta(days=1), paid_day.date() + timedelta(days=1))

    api = bearer_client(user)
    free = {"start_date": free_day.date().isoformat(), "end_date": free_day.date().isoformat()}
    answers = {
        "budget": api.get("/api/v1/budget"),
        "token-usage": api.get("/api/v1/token-usage"),
        "token-usage of a conversation": api.get("/api/v1/token-usage", {"conversation_id": "conv_free"}),
        "stats": api.get("/api/v1/usage/stats", free),
        "history": api.get("/api/v1/usage/history", free),
        "daily": api.get("/api/v1/usage/daily", free),
        "export.csv": api.get("/api/v1/usage/export.csv", free),
        "ops stats": staff_client.get("/api/v1/stats"),
    }
    bodies = {}
    for name, response in answers.items():
        assert response.status_code == 200, name
        bodies[name] = (b"".join(response.streaming_content) if response.streaming else response.content).decode()
        assert not EXPONENT.search(bodies[name]), f"{name} spells a number with an exponent: {bodies[name][:300]!r}"

    budget = answers["budget"].json()
    money = {
        "budget.cost_used": budget["cost_used"],
        "budget.cost_limit": budget["cost_limit"],
        "token-usage.total_estimated_cost": answers["token-usage"].json()["total_estimated_cost"],
        "token-usage(conversation).total_estimated_cost":
            answers["token-usage of a conversation"].json()["total_estimated_cost"],
        **{f"stats[{n}].total_cost": row["total_cost"] for n, row in enumerate(answers["stats"].json()["stats"])},
        **{f"history[{n}].cost_estimate": row["cost_estimate"]
           for n, row in enumerate(answers["history"].json()["history"])},
        **{f"daily[{n}].cost": row["cost"] for n, row in enumerate(answers["daily"].json()["days"])},
        "ops stats.total_estimated_cost": answers["ops stats"].json()["total_estimated_cost"],
    }
    export = csv.DictReader(io.StringIO(bodies["export.csv"]))
    money |= {f"export[{n}].cost_estimate": row["cost_estimate"] for n, row in enumerate(export)}
    assert len(money) == 11
    assert {name: value for name, value in money.items() if not MONEY.match(value or "")} == {}
    assert budget["cost_used"] == "0.00000000" and budget["cost_limit"] == "5.00000000"

    # The same amount reads the same on the dashboard and in the admin report, 0 included.
    for when, expected in ((free_day, "0.00"), (paid_day, "1234.50012345")):
        dashboard, report = pages(user, staff_client, when.date().isoformat())
        for name, html in (("dashboard", dashboard), ("admin report", report)):
            assert not EXPONENT.search(html), f"the {name} spells money with an exponent"
        shown = {
            "dashboard": dashboard_total(dashboard, "cost"),
            "admin report": report_figure(report, r"Cost \(USD\)<strong>([^<]*)</strong>"),
        }
        assert shown == dict.fromkeys(shown, expected)

    csv_report = staff_client.get(REPORT, {"start": free["start_date"], "end": free["end_date"], "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(csv_report.content.decode())))
    assert rows and {row["cost"] for row in rows} == {"0.00000000"}
