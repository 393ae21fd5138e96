"""The usage dashboard: figures from the daily rollups, in the user's days, for the chosen range."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from usage.models import DailyUsageRollup

pytestmark = pytest.mark.django_db


def rollup(user, day, model="offline-demo", requests=1, prompt=10, completion=20, cost="0.00100000", **extra):
    return DailyUsageRollup.objects.create(
        day=day, user=user, provider="offline", model_name=model, requests=requests, prompt_tokens=prompt,
        completion_tokens=completion, total_tokens=prompt + completion, cost=Decimal(cost), **extra,
    )


def total(html: str, name: str) -> str:
    marker = f'<dd data-total="{name}">'
    start = html.index(marker) + len(marker)
    return html[start:html.index("</dd>", start)]


def test_dashboard_totals_cover_only_the_chosen_range_and_user(owner, stranger, owner_client):
    today = timezone.now().date()
    inside, outside = today - timedelta(days=3), today - timedelta(days=10)
    rollup(owner, inside, requests=2, prompt=100, completion=50, cost="0.01000000")
    rollup(owner, inside, model="gpt-4o-mini", requests=3, prompt=300, completion=200, cost="0.02000000")
    rollup(owner, outside, requests=7, prompt=7000, completion=7000, cost="5.00000000")
    rollup(stranger, inside, requests=9, prompt=9000, completion=9000, cost="9.00000000")
    start = (today - timedelta(days=5)).isoformat()
    html = owner_client.get(f"/usage/?start_date={start}&end_date={today.isoformat()}").content.decode()
    assert total(html, "requests") == "5"
    assert total(html, "prompt_tokens") == "400"
    assert total(html, "completion_tokens") == "250"
    assert total(html, "total_tokens") == "650"
    assert total(html, "cost") == '<span class="money" data-exact="0.03">$0.03</span>'
    # One chart point per day of the range, empty days at zero.
    assert html.count("<tr><th scope=\"row\">") - html.count("(offline)") - html.count("(openai)") == 6


def test_dashboard_default_range_is_the_last_30_days_in_the_users_zone(owner, owner_client):
    owner.timezone = "Pacific/Kiritimati"  # UTC+14: its today is often UTC's tomorrow
    owner.save()
    local_today = timezone.now().astimezone(owner.tzinfo).date()
    rollup(owner, local_today, requests=4, prompt=1, completion=1)
    rollup(owner, local_today - timedelta(days=30), requests=100)
    html = owner_client.get("/usage/").content.decode()
    assert total(html, "requests") == "4"
    assert f"to {local_today.isoformat()}" in html


def test_per_model_table_compares_requests_tokens_per_request_and_cost_per_1k(owner, owner_client):
    day = timezone.now().date()
    rollup(owner, day, model="offline-demo", requests=4, prompt=1000, completion=1000, cost="0.00400000")
    html = owner_client.get("/usage/").content.decode()
    row = html[html.index("offline-demo <span"):]
    row = row[:row.index("</tr>")]
    # 2000 tokens over 4 requests; $0.004 over 2000 tokens = $0.002 per 1K.
    assert '<td>4</td><td>2,000</td><td>500.0</td><td><span class="money" data-exact="0.004">$0.004</span></td><td><span class="money" data-exact="0.002">$0.002</span></td>' in row


def test_chart_is_inline_svg_with_title_desc_and_a_table_fallback(owner, owner_client):
    rollup(owner, timezone.now().date(), prompt=1200, completion=34)
    html = owner_client.get("/usage/").content.decode()
    assert '<svg class="chart" role="img" aria-labelledby="daily-chart-title daily-chart-desc"' in html
    assert '<title id="daily-chart-title">Daily tokens and cost' in html
    assert '<desc id="daily-chart-desc">' in html
    assert "1,234 tokens" in html
    assert 'id="daily-table"' in html and "<td>1,234</td>" in html
    assert "<script" not in html.split("</header>", 1)[1]  # no script needed on this page


def test_csv_link_carries_the_range_as_the_users_local_days(owner, owner_client):
    owner.timezone = "Asia/Tokyo"
    owner.save()
    html = owner_client.get("/usage/?start_date=2026-01-01&end_date=2026-01-31").content.decode()
    start = html.index('href="/api/v1/usage/export.csv?') + len('href="')
    link = html[start:html.index('"', start)].replace("&amp;", "&")
    query = parse_qs(urlparse(link).query)
    assert parse_datetime(query["start_date"][0]).isoformat() == "2025-12-31T15:00:00+00:00"
    assert parse_datetime(query["end_date"][0]).isoformat() == "2026-01-31T14:59:59.999999+00:00"
    response = owner_client.get(link)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_a_reversed_range_is_refused_with_a_message(owner, owner_client):
    html = owner_client.get("/usage/?start_date=2026-02-01&end_date=2026-01-01").content.decode()
    assert "The start date must not be after the end date." in html


def test_dashboard_shows_the_budget(owner, owner_client):
    budget = owner.budget
    budget.token_limit = 2000
    budget.save()
    html = owner_client.get("/usage/").content.decode()
    assert "of 2,000 tokens used" in html
    assert '<progress id="dashboard-budget" max="100"' in html
