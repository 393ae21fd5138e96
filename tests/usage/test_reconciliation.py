"""The admin report's reconciliation: where the provider bills, billed against the list-price estimate
of the same requests per model and day, with the variance; and the catalogue's admin pages."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tests.ops.conftest import make_log, user_in
from usage.admin_reports import build_report, report_csv
from usage.models import CatalogueEntry, ProviderPrice
from usage.rollups import rollup_range

pytestmark = pytest.mark.django_db

REPORT = "/admin/usage/dailyusagerollup/report/"


@pytest.fixture
def billed(db):
    alice, bob = user_in("alice", "UTC"), user_in("bob", "Asia/Tokyo")
    kimi = {"provider": "openrouter", "model_name": "moonshotai/kimi-k2"}
    make_log(alice, datetime(2026, 5, 1, 9, tzinfo=UTC), **kimi, cost_estimate=Decimal("0.0010"),
             actual_cost=Decimal("0.0012"))
    make_log(bob, datetime(2026, 5, 1, 9, tzinfo=UTC), **kimi, cost_estimate=Decimal("0.0020"),
             actual_cost=Decimal("0.0024"))
    # Not billed by its provider: in the cost, never in the reconciliation.
    make_log(alice, datetime(2026, 5, 1, 10, tzinfo=UTC), cost_estimate=Decimal("0.5"))
    make_log(alice, datetime(2026, 5, 2, 9, tzinfo=UTC), **kimi, cost_estimate=None, actual_cost=Decimal("0.0007"))
    rollup_range(date(2026, 4, 30), date(2026, 5, 3))


def test_billed_against_list_price_per_model_and_day_with_the_variance(billed):
    report = build_report(date(2026, 5, 1), date(2026, 5, 2))
    rows = [(r["day"], r["model_name"], r["actual_cost"], r["billed_estimate"], r["variance"], r["variance_percent"])
            for r in report.reconciliation]
    assert rows == [
        (date(2026, 5, 1), "moonshotai/kimi-k2", Decimal("0.0036"), Decimal("0.0030"), Decimal("0.0006"),
         Decimal("20.0")),
        # A day whose list price was unknown: the estimate is, too.
        (date(2026, 5, 2), "moonshotai/kimi-k2", Decimal("0.0007"), None, None, None),
    ]
    table = list(csv.reader(io.StringIO(report_csv(report))))
    header = table[0]
    line = next(r for r in table if r[0] == "reconciliation")
    assert line[1] == "2026-05-01/openrouter/moonshotai/kimi-k2"
    assert (line[header.index("actual_cost")], line[header.index("billed_estimate")], line[header.index("variance")]) == (
        "0.00360000", "0.00300000", "0.00060000")


def test_the_report_page_shows_the_reconciliation(billed, admin_client):
    html = admin_client.get(REPORT, {"start": "2026-05-01", "end": "2026-05-02"}).content.decode()
    assert 'id="reconciliation-table"' in html
    assert "0.0036" in html and "+0.0006" in html and "+20.0%" in html and "price unknown" in html


def test_the_catalogue_admin_is_grouped_by_provider_searchable_and_shows_each_price(admin_client):
    entry = CatalogueEntry.objects.get(provider="openrouter", model_id="moonshotai/kimi-k2")
    ProviderPrice.objects.create(entry=entry, effective_date=date(2026, 1, 1), input_per_mtok=Decimal("0.6"),
                                 output_per_mtok=Decimal("2.5"))
    CatalogueEntry.objects.create(provider="box", model_id="qwen3:8b", display_name="Qwen3 8B")
    page = admin_client.get("/admin/usage/catalogueentry/").content.decode()
    assert "0.60 / 2.50 (provider)" in page and "price unknown" in page and "(free)" in page
    found = admin_client.get("/admin/usage/catalogueentry/", {"q": "kimi"})
    assert {e.model_id for e in found.context["cl"].result_list} == {"moonshotai/kimi-k2", "moonshotai/kimi-k2:free"}
    by_provider = admin_client.get("/admin/usage/catalogueentry/", {"provider": "gemini"})
    assert {e.provider for e in by_provider.context["cl"].result_list} == {"gemini"}
    assert admin_client.get(f"/admin/usage/catalogueentry/{entry.pk}/change/").status_code == 200
    assert admin_client.get("/admin/usage/catalogueentry/add/").status_code == 403
