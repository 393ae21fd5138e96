"""Per-user budgets: periods in the user's time zone, reservations, settling, and the budget payload.

Locking contract: `reserve`, `settle_reservation` and `release_reservation` must run inside the
caller's transaction. Each takes the Budget row lock with a conditional UPDATE (so concurrent
checks are decided one at a time by the database, never by a read-then-write in Python) and holds
it to commit. Take it before `chat.sync_clock.tick()` so every writer locks in the same order.

Budgets count usage log rows only: `tokens_used`/`cost_used` grow by what a settled usage row
recorded, and a period rollover recomputes them from the rows of the new period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from chatlima.errors import ClientError
from chatlima.formats import money_str, utc_iso
from usage.models import ApiUsageLog, Budget, BudgetReservation

RATE_WINDOW_DAYS = 7
RATE_CACHE_SECONDS = 60


def _as_aware(value: datetime) -> datetime:
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def period_bounds(period: str, tz, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The [start, end) of the budget period containing `now`, as local midnights of the user's zone."""
    local = _as_aware(now or timezone.now()).astimezone(tz)
    day = local.date()
    if period == Budget.Period.DAILY:
        start_day = day
        end_day = day + timedelta(days=1)
    elif period == Budget.Period.WEEKLY:
        start_day = day - timedelta(days=day.weekday())
        end_day = start_day + timedelta(days=7)
    else:
        start_day = day.replace(day=1)
        end_day = (start_day + timedelta(days=32)).replace(day=1)
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=tz)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    return start, end


def used_in(user_id: int, start: datetime, end: datetime | None = None) -> tuple[int, Decimal]:
    """Tokens and cost of the user's usage rows in [start, end) (settled rows only)."""
    rows = ApiUsageLog.objects.filter(user_id=user_id, created_at__gte=start).exclude(
        status=ApiUsageLog.Status.PENDING
    )
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    sums = rows.aggregate(t=Coalesce(Sum("total_tokens"), 0), c=Coalesce(Sum("cost_estimate"), Decimal("0")))
    return int(sums["t"]), Decimal(sums["c"])


def current_budget(user: User, now: datetime | None = None, budget: Budget | None = None) -> Budget:
    """The user's budget, rolled over to the period containing `now` when a boundary has passed.

    The rollover is a compare-and-set on `period_start`, so two requests crossing the boundary
    together reset it once. A caller that has just read the row passes it as `budget`.
    """
    budget = budget or Budget.objects.for_user(user)
    start, _ = period_bounds(budget.period, user.tzinfo, now)
    if budget.period_start < start:
        tokens, cost = used_in(user.pk, start)
        Budget.objects.filter(pk=budget.pk, period_start=budget.period_start).update(
            period_start=start, last_reset_at=timezone.now(), tokens_used=tokens, cost_used=cost,
            alert_80_sent_at=None, alert_100_sent_at=None,
        )
        budget.refresh_from_db()
    elif budget.period_start != start:
        # A budget created mid-period belongs to the period it was created in.
        Budget.objects.filter(pk=budget.pk, period_start=budget.period_start).update(period_start=start)
        budget.refresh_from_db()
    return budget


@dataclass(frozen=True)
class Hold:
    reservation_id: int
    tokens: int
    cost: Decimal


def _limit_details(budget: Budget, tokens: int, cost: Decimal, period_end: datetime) -> dict[str, Any]:
    return {
        "token_limit": budget.token_limit,
        "tokens_used": budget.tokens_used,
        "tokens_held": budget.tokens_held,
        "tokens_requested": tokens,
        "cost_limit": money_str(budget.cost_limit),
        "cost_used": money_str(budget.cost_used),
        "cost_requested": money_str(cost),
        "period": budget.period,
        "period_end": utc_iso(period_end, "auto"),
        "reset_at": utc_iso(period_end, "auto"),
    }


def _hold(budget_pk: int, tokens: int, cost: Decimal) -> bool:
    """Add a hold to a budget row if it fits under both limits; the database decides, under the row lock."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Budget._meta.db_table)
    cost = Budget._meta.get_field("cost_held").get_db_prep_save(cost, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET tokens_held = tokens_held + %s, cost_held = cost_held + %s "
            "WHERE id = %s "
            "AND (token_limit IS NULL OR token_limit >= tokens_used + tokens_held + %s) "
            "AND (cost_limit IS NULL OR cost_limit >= cost_used + cost_held + %s)",
            [tokens, cost, budget_pk, tokens, cost],
        )
        return cursor.rowcount == 1


def reserve(user: User, request_id: str, tokens: int, cost: Decimal | Callable[[], Decimal] = Decimal("0"),
            ttl_seconds: int | None = None) -> Hold:
    """Hold `tokens` (and `cost`) on the user's budget for one exchange, or raise TOKEN_LIMIT_EXCEEDED.

    The check and the hold are one conditional UPDATE: `used + held + asked <= limit` decided by
    the database under the row lock, so parallel requests can never all pass a check only some of
    them can afford. `cost` may be a callable, priced only when the budget has a cost limit.
    """
    assert transaction.get_connection().in_atomic_block, "reserve() must run inside the caller's transaction"
    budget = current_budget(user)
    if callable(cost):
        cost = cost() if budget.cost_limit is not None else Decimal("0")
    if not _hold(budget.pk, tokens, cost):
        budget.refresh_from_db()
        _, end = period_bounds(budget.period, user.tzinfo)
        raise ClientError(
            "TOKEN_LIMIT_EXCEEDED",
            "This request would go over your budget for this period.",
            _limit_details(budget, tokens, cost, end),
        )
    now = timezone.now()
    ttl = ttl_seconds if ttl_seconds is not None else settings.CHATLIMA_RESERVATION_TTL_SECONDS
    reservation = BudgetReservation.objects.create(
        user=user, request_id=request_id, tokens=tokens, cost=cost, created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    return Hold(reservation.pk, tokens, cost)


def _mark_closed(reservation_id: int, state: str) -> bool:
    """Move a reservation out of `held` (a compare-and-set: True for exactly one caller)."""
    return BudgetReservation.objects.filter(pk=reservation_id, state=BudgetReservation.State.HELD).update(
        state=state, closed_at=timezone.now()) == 1


def _close(reservation_id: int, state: str) -> BudgetReservation | None:
    """Move a held reservation to `state` and take its hold off the budget, exactly once."""
    if not _mark_closed(reservation_id, state):
        return None
    reservation = BudgetReservation.objects.get(pk=reservation_id)
    Budget.objects.filter(user_id=reservation.user_id).update(
        tokens_held=F("tokens_held") - reservation.tokens, cost_held=F("cost_held") - reservation.cost)
    return reservation


# Every exchange's settle runs this literal statement: the ORM's update() with these four F()
# expressions costs 0.9 ms of CPU per call, this 0.2 ms (PostgreSQL; chat/exchange/__init__.py has
# the figures).
COUNT_SETTLED = (
    "UPDATE accounts_budget SET tokens_held = tokens_held - %s, cost_held = cost_held - %s, "
    "tokens_used = tokens_used + %s, cost_used = cost_used + %s WHERE user_id = %s"
)


def settle_reservation(user_id: int, reservation_id: int | None, tokens: int, cost: Decimal | None,
                       *, state: str = BudgetReservation.State.SETTLED,
                       held_tokens: int | None = None, held_cost: Decimal | None = None) -> Budget:
    """Count what a usage row recorded against the budget and close the hold (if still held).

    The figures are counted even when the hold already expired: budgets count usage rows, and a
    usage row is only written once. Callers that know the hold's size pass it, which saves a read.
    Returns the budget as it now stands (read under the row lock this update holds).
    """
    assert transaction.get_connection().in_atomic_block, "settle_reservation() must run inside a transaction"
    release_tokens, release_cost = 0, Decimal("0")
    if reservation_id is not None and _mark_closed(reservation_id, state):
        if held_tokens is None or held_cost is None:
            held_tokens, held_cost = BudgetReservation.objects.values_list("tokens", "cost").get(pk=reservation_id)
        release_tokens, release_cost = held_tokens, held_cost
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(COUNT_SETTLED, [release_tokens, release_cost, tokens, cost or Decimal("0"), user_id])
    return Budget.objects.get(user_id=user_id)


def release_reservation(reservation_id: int, state: str = BudgetReservation.State.RELEASED) -> bool:
    with transaction.atomic():
        return _close(reservation_id, state) is not None


def touch_reservations(reservation_ids: list[int], ttl_seconds: int | None = None) -> None:
    """Push live exchanges' hold expiry forward (chat.partials does, a few times per TTL).

    One UPDATE of the still-held rows; no lock beyond the rows it updates.
    """
    ttl = ttl_seconds if ttl_seconds is not None else settings.CHATLIMA_RESERVATION_TTL_SECONDS
    BudgetReservation.objects.filter(pk__in=reservation_ids, state=BudgetReservation.State.HELD).update(
        expires_at=timezone.now() + timedelta(seconds=ttl)
    )


def expire_stale_reservations(now: datetime | None = None) -> int:
    """Expire holds past their expiry whose exchange never closed them; returns how many."""
    now = now or timezone.now()
    count = 0
    stale = BudgetReservation.objects.filter(state=BudgetReservation.State.HELD, expires_at__lt=now)
    for reservation_id in stale.values_list("pk", flat=True):
        if release_reservation(reservation_id, BudgetReservation.State.EXPIRED):
            count += 1
    return count


def recent_usage(user_id: int, now: datetime) -> tuple[int, Decimal]:
    """Tokens and cost of the last RATE_WINDOW_DAYS, for the days-until-limit estimate.

    Every exchange asks, so the figure is kept for a minute in the "figures" cache that every process
    shares (Redis); without Redis that cache keeps nothing and each call asks the database.
    """
    figures = caches["figures"]
    key = f"budget-recent-usage:{user_id}"
    cached = figures.get(key)
    if cached is None:
        cached = used_in(user_id, now - timedelta(days=RATE_WINDOW_DAYS), None)
        figures.set(key, cached, RATE_CACHE_SECONDS)
    return cached


def _days_until_limit(budget: Budget, user_id: int, now: datetime) -> float | None:
    if budget.token_limit is None and budget.cost_limit is None:
        return None
    tokens, cost = recent_usage(user_id, now)
    estimates: list[float] = []
    if budget.token_limit is not None and tokens > 0:
        per_day = tokens / RATE_WINDOW_DAYS
        estimates.append(max(budget.token_limit - budget.tokens_used, 0) / per_day)
    if budget.cost_limit is not None and cost > 0:
        per_day_cost = cost / RATE_WINDOW_DAYS
        days_left = max(budget.cost_limit - budget.cost_used, Decimal("0")) / per_day_cost  # Decimal money in, days out
        estimates.append(float(days_left))
    return round(min(estimates), 1) if estimates else None


def budget_payload(user: User, now: datetime | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """GET /api/v1/budget (API.md), plus what the open holds take and when the period ends.

    Money as `chatlima.formats.money_str` spells it (8 places, never 0E-8); pages format it for show.
    """
    now = _as_aware(now or timezone.now())
    budget = current_budget(user, now, budget)
    _, end = period_bounds(budget.period, user.tzinfo, now)

    return {
        "period": budget.period,
        "period_start": utc_iso(budget.period_start),
        "period_end": utc_iso(end),
        "last_reset_at": utc_iso(budget.last_reset_at),
        "token_limit": budget.token_limit,
        "total_tokens_used": budget.tokens_used,
        "remaining_tokens": budget.remaining_tokens,
        "tokens_held": budget.tokens_held,
        "cost_limit": money_str(budget.cost_limit),
        "cost_used": money_str(budget.cost_used),
        "currency": "USD",
        "estimated_days_until_limit": _days_until_limit(budget, user.pk, now),
    }
