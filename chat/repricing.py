"""Repricing a period on purpose: costs recomputed at the prices in force on each exchange's day.

Costs are fixed when an exchange settles, so a later price change leaves past costs alone. When an
administrator corrects a price for days already past (a price with an earlier effective date), this
recomputes what those days' exchanges cost and everything summed from them, and logs what changed.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat import sync_clock
from chat.models import Conversation, Message
from chatlima.formats import money_str
from usage.alerts import check_budget_alerts
from usage.models import ApiUsageLog, Budget, ModelPrice, Repricing
from usage.pricing import cost_of
from usage.rollups import rollup_day

logger = logging.getLogger(__name__)
ZERO = Decimal("0")


@dataclass
class _Tally:
    rows: int = 0
    before: Decimal = ZERO
    after: Decimal = ZERO


@dataclass
class _UserChanges:
    rows: list[ApiUsageLog] = field(default_factory=list)
    conversations: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    days: set[date] = field(default_factory=set)


def reprice(start: date, end: date, *, provider: str = "", model: str = "", requested_by=None,
            dry_run: bool = False) -> Repricing:
    """Recompute the cost of every finished usage row created on the UTC days `start` to `end`
    (inclusive; of one provider and/or model when given) at the price in force on its day, and what
    is summed from those costs: the assistant messages' costs, their conversations' totals, the
    current period's budget (rows the provider billed count there at their billed cost, which
    stays), and the daily rollups of the days touched. Rows that were not charged (`usage_source`
    none) stay at zero. Returns the log of what changed, saved unless `dry_run`.

    Transactions: one per user, taking the budget row, then the user's sync clock (the exchange
    pipeline's lock order), then updating that user's rows, messages and conversations; the
    rollups are recomputed afterwards by `usage.rollups.rollup_day` (its own transaction and locks).
    """
    since = datetime.combine(start, time.min, UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, UTC)
    rows = (ApiUsageLog.objects.finished().filter(created_at__gte=since, created_at__lt=until)
            .exclude(usage_source=ApiUsageLog.Source.NONE).select_related("user").order_by("user_id", "created_at"))
    if provider:
        rows = rows.filter(provider=provider)
    if model:
        rows = rows.filter(model_name=model)
    log = Repricing(start=start, end=end, provider=provider, model_name=model, requested_by=requested_by)
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    changes: dict[int, _UserChanges] = defaultdict(_UserChanges)
    for row in rows.iterator(chunk_size=2000):
        log.rows_examined += 1
        new = cost_of(row.model_name, row, on=row.created_at, provider=row.provider)
        if new == row.cost_estimate:
            continue
        tally = tallies[(row.provider, row.model_name)]
        tally.rows += 1
        tally.before += row.cost_estimate or ZERO
        tally.after += new or ZERO
        row.repriced_from = row.cost_estimate
        row.cost_estimate = new
        user = changes[row.user_id]
        user.rows.append(row)
        if row.conversation_id is not None:
            user.conversations[row.conversation_id] += (new or ZERO) - (row.repriced_from or ZERO)
        user.days.add(row.created_at.astimezone(zoneinfo.ZoneInfo(row.user.timezone)).date())
    log.rows_changed = sum(t.rows for t in tallies.values())
    log.cost_before = sum((t.before for t in tallies.values()), ZERO)
    log.cost_after = sum((t.after for t in tallies.values()), ZERO)
    log.changes = [
        {"provider": p, "model_name": m, "rows": t.rows, "cost_before": money_str(t.before),
         "cost_after": money_str(t.after)}
        for (p, m), t in sorted(tallies.items())
    ]
    if dry_run:
        return log
    for user_id, user in changes.items():
        _apply(user_id, user)
    for day, user_ids in _by_day(changes).items():
        rollup_day(day, user_ids=user_ids)
    for user_id in changes:
        check_budget_alerts(user_id)
    log.save()
    logger.info("repriced %s..%s%s: %d of %d rows changed, %s -> %s", start, end,
                f" ({provider or '*'}/{model or '*'})" if provider or model else "", log.rows_changed,
                log.rows_examined, money_str(log.cost_before), money_str(log.cost_after))
    return log


def _apply(user_id: int, user: _UserChanges) -> None:
    with transaction.atomic():
        budget = Budget.objects.filter(user_id=user_id).only("period_start").first()
        if budget is not None:
            # What the budget counted: the billed cost where there is one (unchanged), else the estimate.
            delta = sum(((r.cost_estimate or ZERO) - (r.repriced_from or ZERO) for r in user.rows
                         if r.actual_cost is None and r.created_at >= budget.period_start), ZERO)
            Budget.objects.filter(user_id=user_id).update(cost_used=F("cost_used") + delta)
        version = sync_clock.tick(user_id)
        ApiUsageLog.objects.bulk_update(user.rows, ["cost_estimate"], batch_size=500)
        for row in user.rows:
            if row.message_id is not None:
                Message.objects.filter(pk=row.message_id).update(cost=row.cost_estimate, version=version)
        for conversation_id, delta in user.conversations.items():
            Conversation.objects.filter(pk=conversation_id).update(estimated_cost=F("estimated_cost") + delta,
                                                                   version=version)


def _by_day(changes: dict[int, _UserChanges]) -> dict[date, list[int]]:
    days: dict[date, list[int]] = defaultdict(list)
    for user_id, user in changes.items():
        for day in user.days:
            days[day].append(user_id)
    return days


def period_of(price: ModelPrice, today: date | None = None) -> tuple[date, date]:
    """The days an administrator's price row covers: its effective date to the day before the model's
    next price row (today at most)."""
    today = today or timezone.now().astimezone(UTC).date()
    following = (ModelPrice.objects.filter(model_id=price.model_id, is_active=True,
                                           effective_date__gt=price.effective_date)
                 .order_by("effective_date").values_list("effective_date", flat=True).first())
    end = min(today, following - timedelta(days=1)) if following else today
    return price.effective_date, max(end, price.effective_date)
