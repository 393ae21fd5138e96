"""Repricing a period on purpose (chat/repricing.py): exactly the rows of the period are priced again at
the price in force on their day, and every figure summed from them follows; nothing else moves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.utils import timezone

from chat.exchange import start_exchange
from chat.models import Conversation, Message
from chat.repricing import period_of, reprice
from usage.models import ApiUsageLog, Budget, DailyModelRollup, DailyUsageRollup, ModelPrice, Repricing
from usage.pricing import forget_prices, price_cost
from usage.rollups import rollup_day

pytestmark = pytest.mark.django_db(transaction=True)

TODAY = timezone.now().astimezone(UTC).date()
BEFORE, INSIDE = TODAY - timedelta(days=20), TODAY - timedelta(days=5)  # the period: INSIDE - 2 .. today
START = INSIDE - timedelta(days=2)


def exchange(user, conversation_id: str | None = None) -> ApiUsageLog:
    async def run():
        body = {"message": "What does this cost?", "model": "offline-demo"}
        if conversation_id:
            body["conversation_id"] = conversation_id
        started = await start_exchange(user, body)
        return [event async for event in started.events()]

    events = async_to_sync(run)()
    assert events[-1]["type"] == "message_complete"
    return ApiUsageLog.objects.get(user=user, request_id=events[-1]["request_id"])


def moved(row: ApiUsageLog, day: date) -> ApiUsageLog:
    ApiUsageLog.objects.filter(pk=row.pk).update(created_at=datetime(day.year, day.month, day.day, 15, tzinfo=UTC))
    row.refresh_from_db()
    return row


@pytest.fixture
def history(owner, stranger, settings):
    """Free offline exchanges on three days, one of them billed by its provider and one not charged at all."""
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0
    stranger.timezone = "America/New_York"
    stranger.save()
    old = moved(exchange(owner), BEFORE)
    conversation = Conversation.objects.get(pk=old.conversation_id)
    inside = moved(exchange(owner, conversation.public_id), INSIDE)
    today = exchange(owner, conversation.public_id)
    billed = exchange(stranger)
    ApiUsageLog.objects.filter(pk=billed.pk).update(actual_cost=Decimal("0.00042"))
    unbilled = exchange(owner)
    ApiUsageLog.objects.filter(pk=unbilled.pk).update(usage_source=ApiUsageLog.Source.NONE, prompt_tokens=0,
                                                      completion_tokens=0, total_tokens=0)
    for day in {BEFORE, INSIDE, TODAY, TODAY - timedelta(days=1)}:
        rollup_day(day)
    assert all(r.cost_estimate == 0 for r in ApiUsageLog.objects.all())  # offline-demo is free
    return {"old": old, "inside": inside, "today": today, "billed": billed, "unbilled": unbilled,
            "conversation": conversation}


def corrected_price() -> ModelPrice:
    """An administrator's price for days already past."""
    price = ModelPrice.objects.create(provider="offline", model_id="offline-demo", display_name="Offline demo",
                                      effective_date=START, input_per_mtok=Decimal("3"), output_per_mtok=Decimal("15"))
    forget_prices()
    return price


def list_cost(row: ApiUsageLog) -> Decimal:
    return price_cost(ModelPrice(input_per_mtok=Decimal("3"), output_per_mtok=Decimal("15")), row)


def test_a_repricing_recomputes_exactly_the_period_and_what_is_summed_from_it(history, owner, stranger):
    corrected_price()
    budget_before = {b.user_id: b.cost_used for b in Budget.objects.all()}
    versions = {m.pk: m.version for m in Message.objects.all()}
    old_rollup = DailyUsageRollup.objects.get(day=BEFORE, user=owner)

    log = reprice(START, TODAY)

    rows = {name: ApiUsageLog.objects.get(pk=row.pk) for name, row in history.items() if name != "conversation"}
    assert rows["old"].cost_estimate == 0  # before the period: a later price leaves past costs alone
    assert rows["unbilled"].cost_estimate == 0  # nothing was charged, and nothing is
    for name in ("inside", "today", "billed"):
        assert rows[name].cost_estimate == list_cost(rows[name]) > 0, name
        assert Message.objects.get(pk=rows[name].message_id).cost == rows[name].cost_estimate
        assert Message.objects.get(pk=rows[name].message_id).version > versions[rows[name].message_id]
    assert rows["billed"].actual_cost == Decimal("0.00042")

    conversation = Conversation.objects.get(pk=history["conversation"].pk)
    assert conversation.estimated_cost == rows["inside"].cost_estimate + rows["today"].cost_estimate
    recomputed = Conversation.objects.get(pk=conversation.pk)
    recomputed.recompute_totals(save=False)
    assert recomputed.estimated_cost == conversation.estimated_cost

    budgets = {b.user_id: b.cost_used for b in Budget.objects.all()}
    # This month's budget counts the estimate of today's row; the billed row counts at what was billed.
    period_start = Budget.objects.get(user=owner).period_start
    moved_in_period = sum((rows[n].cost_estimate for n in ("inside", "today") if rows[n].created_at >= period_start),
                          Decimal("0"))
    assert budgets[owner.pk] == budget_before[owner.pk] + moved_in_period
    assert budgets[stranger.pk] == budget_before[stranger.pk]

    assert DailyUsageRollup.objects.get(day=INSIDE, user=owner).cost == rows["inside"].cost_estimate
    assert DailyModelRollup.objects.get(day=INSIDE, model_name="offline-demo").cost == rows["inside"].cost_estimate
    assert DailyUsageRollup.objects.get(day=BEFORE, user=owner).computed_at == old_rollup.computed_at
    stranger_day = rows["billed"].created_at.astimezone(stranger.tzinfo).date()
    billed_rollup = DailyUsageRollup.objects.get(day=stranger_day, user=stranger)
    assert (billed_rollup.cost, billed_rollup.actual_cost, billed_rollup.billed_estimate) == (
        rows["billed"].cost_estimate, Decimal("0.00042"), rows["billed"].cost_estimate)

    assert Repricing.objects.get() == log
    assert (log.rows_examined, log.rows_changed, log.cost_before) == (3, 3, 0)
    assert log.cost_after == sum(rows[n].cost_estimate for n in ("inside", "today", "billed"))
    assert log.changes == [{"provider": "offline", "model_name": "offline-demo", "rows": 3,
                            "cost_before": "0.00000000", "cost_after": f"{log.cost_after:.8f}"}]

    again = reprice(START, TODAY)
    assert again.rows_changed == 0 and Conversation.objects.get(pk=conversation.pk).estimated_cost == (
        conversation.estimated_cost)


def test_a_dry_run_changes_nothing(history):
    corrected_price()
    log = reprice(START, TODAY, dry_run=True)
    assert log.rows_changed == 3 and log.pk is None
    assert all(r.cost_estimate == 0 for r in ApiUsageLog.objects.all())
    assert not Repricing.objects.exists()


def test_only_the_model_and_provider_asked_for(history):
    corrected_price()
    assert reprice(START, TODAY, model="gpt-4o").rows_examined == 0
    assert reprice(START, TODAY, provider="gemini").rows_examined == 0
    assert reprice(START, TODAY, provider="offline", model="offline-demo").rows_changed == 3


def test_the_command_reprices_and_says_what_changed(history, capsys):
    corrected_price()
    call_command("reprice", "--from", START.isoformat(), "--to", TODAY.isoformat(), "--dry-run")
    assert "3 rows examined, 3 would change" in capsys.readouterr().out
    assert all(r.cost_estimate == 0 for r in ApiUsageLog.objects.all())
    call_command("reprice", "--from", START.isoformat(), "--to", TODAY.isoformat(), "--model", "offline-demo")
    out = capsys.readouterr().out
    assert "offline/offline-demo: 3 rows, 0.00000000 ->" in out and "3 changed" in out
    assert Repricing.objects.count() == 1


def test_the_price_admin_action_asks_first_then_reprices_the_days_that_price_covers(history, admin_client):
    price = corrected_price()
    assert period_of(price) == (START, TODAY)
    form = {"action": "reprice_their_days", "_selected_action": [price.pk]}
    page = admin_client.post("/admin/usage/modelprice/", form)
    assert page.status_code == 200 and b"reprice-preview" in page.content
    assert all(r.cost_estimate == 0 for r in ApiUsageLog.objects.all())
    done = admin_client.post("/admin/usage/modelprice/", {**form, "confirm": "yes"})
    assert done.status_code == 302
    log = Repricing.objects.get()
    assert (log.rows_changed, log.model_name, log.requested_by.is_superuser) == (3, "offline-demo", True)
    assert admin_client.get(f"/admin/usage/repricing/{log.pk}/change/").status_code == 200


def test_a_price_row_covers_the_days_until_the_next_one(db):
    first = ModelPrice.objects.create(provider="openai", model_id="m", display_name="m", effective_date=date(2026, 1, 1),
                                      input_per_mtok=1, output_per_mtok=1)
    ModelPrice.objects.create(provider="openai", model_id="m", display_name="m", effective_date=date(2026, 2, 1),
                              input_per_mtok=2, output_per_mtok=2)
    assert period_of(first, today=date(2026, 6, 1)) == (date(2026, 1, 1), date(2026, 1, 31))
