from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from usage.models import ApiUsageLog, CatalogueEntry, DailyUsageRollup, ModelPrice
from usage.pricing import admin_prices_on

pytestmark = pytest.mark.django_db


def test_the_seeded_models_are_catalogue_entries_and_no_longer_prices():
    providers = set(CatalogueEntry.objects.values_list("provider", flat=True))
    assert {"offline", "openai", "openrouter", "gemini"} <= providers
    assert CatalogueEntry.objects.get(model_id="gemini-2.5-flash").context_window == 1048576
    # The 2025-10-01 list prices were the hand-kept catalogue: as overrides they would win over every
    # maintained source, so the migration took them out.
    assert not ModelPrice.objects.filter(effective_date=date(2025, 10, 1)).exists()


def test_a_later_admin_price_replaces_the_earlier_one_from_its_effective_date():
    for day, price in ((date(2029, 1, 1), "0.15"), (date(2030, 1, 1), "0.10")):
        ModelPrice.objects.create(
            provider="openai", model_id="gpt-4o-mini", display_name="GPT-4o mini", input_per_mtok=Decimal(price),
            output_per_mtok=Decimal("0.40"), effective_date=day,
        )
    assert admin_prices_on(date(2029, 12, 31))["gpt-4o-mini"].input_per_mtok == Decimal("0.15")
    assert admin_prices_on(date(2030, 1, 1))["gpt-4o-mini"].input_per_mtok == Decimal("0.10")
    assert admin_prices_on(date(2030, 6, 1), {"gpt-4o-mini"})["gpt-4o-mini"].input_per_mtok == Decimal("0.10")
    ModelPrice.objects.filter(effective_date=date(2030, 1, 1)).update(is_active=False)
    assert admin_prices_on(date(2030, 1, 1))["gpt-4o-mini"].input_per_mtok == Decimal("0.15")
    assert "gpt-4o-mini" not in admin_prices_on(date(2028, 12, 31))


def test_one_catalogue_entry_per_provider_and_model(owner):
    CatalogueEntry.objects.create(provider="local", model_id="gpt-4o", display_name="gpt-4o")  # another provider's
    with pytest.raises(IntegrityError), transaction.atomic():
        CatalogueEntry.objects.create(provider="openai", model_id="gpt-4o", display_name="again")


def test_usage_log_keeps_fractions_of_a_cent(owner):
    row = ApiUsageLog.objects.create(
        user=owner, request_id="msg_1", provider="gemini", model_name="gemini-2.5-flash",
        prompt_tokens=40, completion_tokens=19, total_tokens=59, cost_estimate=Decimal("0.0000595"),
        status=ApiUsageLog.Status.SUCCESS, usage_source=ApiUsageLog.Source.PROVIDER,
    )
    row.refresh_from_db()
    assert row.cost_estimate == Decimal("0.0000595")
    assert ApiUsageLog._meta.db_table == "api_usage_logs"


def test_usage_request_id_is_unique_per_user(owner, stranger):
    ApiUsageLog.objects.create(user=owner, request_id="msg_1", provider="offline", model_name="offline-demo")
    ApiUsageLog.objects.create(user=stranger, request_id="msg_1", provider="offline", model_name="offline-demo")
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiUsageLog.objects.create(user=owner, request_id="msg_1", provider="offline", model_name="offline-demo")


def test_one_rollup_row_per_day_user_provider_model(owner):
    key = {"day": date(2025, 7, 22), "user": owner, "provider": "gemini", "model_name": "gemini-2.5-flash"}
    DailyUsageRollup.objects.create(**key, requests=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyUsageRollup.objects.create(**key, requests=2)


def test_a_saved_price_is_used_at_once_although_prices_are_remembered(django_assert_num_queries):
    from usage.pricing import price_for

    today = date.today()
    assert price_for("gpt-4o-mini", today).input_per_mtok == Decimal("0.15")  # genai-prices
    with django_assert_num_queries(0):
        assert price_for("gpt-4o-mini", today).input_per_mtok == Decimal("0.15")
    ModelPrice.objects.create(
        provider="openai", model_id="gpt-4o-mini", display_name="GPT-4o mini", input_per_mtok=Decimal("0.11"),
        output_per_mtok=Decimal("0.40"), effective_date=today,
    )
    assert price_for("gpt-4o-mini", today).input_per_mtok == Decimal("0.11")
    ModelPrice.objects.filter(model_id="gpt-4o-mini", effective_date=today).get().delete()
    assert price_for("gpt-4o-mini", today).input_per_mtok == Decimal("0.15")
