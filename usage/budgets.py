"""Per-user budgets: periods in the user's time zone, reservations, settling, and the budget payload.

Locking contract: `reserve`, `settle_reservation` and `release_reservation` must run inside the
caller's transaction. Each takes the Budget row lock with a conditional UPDATE (so concurrent
checks are decided one at a time by the database: a hold that no longer fits is never written) and
holds it to commit; `reserve` sizes a hold from a read of the row and, when that read turns out
stale, reads it again under the lock (SELECT FOR UPDATE). Take it before `chat.sync_clock.tick()`
so every writer locks in the same order.

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

from accounts.models import ApiToken, User
from chatlima.errors import ClientError
from chatlima.formats import money_display, money_str, utc_iso
from chatlima.rows import first_where, insert_row, update_returning, update_where
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
    budget = budget or first_where(Budget, user_id=user.pk) or Budget.objects.for_user(user)
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
    tokens: int  # the prompt and the output allowance
    cost: Decimal
    output_tokens: int = 0  # the answer's allowance within `tokens`
    clamped: bool = False  # lowered from the output asked for to what the budget had left


# The cost of the prompt plus this many output tokens; None when the model has no known price.
Pricing = Callable[[int], Decimal | None]


def _fixed(cost: Decimal) -> Pricing:
    return lambda output: cost


def _room(budget: Budget, prompt: int, asked: int, pricing: Pricing) -> tuple[int, Decimal]:
    """The most output, at most `asked`, that fits beside `prompt` under both limits as `budget`
    reads, and the cost of the prompt with it (0 without a cost limit). Below 0: not even the
    prompt fits. A model of unknown price is limited by tokens only (its usage costs nothing
    against the budget either: settled rows count an unknown cost as 0)."""
    output = asked
    if budget.token_limit is not None:
        output = min(output, budget.token_limit - budget.tokens_used - budget.tokens_held - prompt)
    if budget.cost_limit is None or output < 0:
        return output, Decimal("0")
    cost = pricing(output)
    if cost is None:
        return output, Decimal("0")
    left = budget.cost_limit - budget.cost_used - budget.cost_held
    if cost <= left:
        return output, cost
    if (pricing(0) or Decimal("0")) > left:
        return -1, Decimal("0")
    # The cost grows with the output: the largest `low` with cost(low) <= left < cost(high).
    low, high = 0, output
    while high - low > 1:
        middle = (low + high) // 2
        if (pricing(middle) or Decimal("0")) <= left:
            low = middle
        else:
            high = middle
    return low, pricing(low) or Decimal("0")


def _remaining(limit, used, held):
    return None if limit is None else max(limit - used - held, 0)


def _limit_details(budget: Budget, prompt: int, asked: int, least: int, pricing: Pricing,
                   period_end: datetime) -> dict[str, Any]:
    """What a refusal says: the limits, what is used, held and left, what the request asked for
    (`*_requested`) and the least it could have gone ahead with (`*_needed`)."""
    priced = budget.cost_limit is not None
    return {
        "token_limit": budget.token_limit,
        "tokens_used": budget.tokens_used,
        "tokens_held": budget.tokens_held,
        "tokens_left": _remaining(budget.token_limit, budget.tokens_used, budget.tokens_held),
        "tokens_requested": prompt + asked,
        "tokens_needed": prompt + least,
        "prompt_tokens": prompt,
        "min_output_tokens": least,
        "cost_limit": money_str(budget.cost_limit),
        "cost_used": money_str(budget.cost_used),
        "cost_left": money_str(_remaining(budget.cost_limit, budget.cost_used, budget.cost_held)),
        "cost_requested": money_str((pricing(asked) if priced else None) or Decimal("0")),
        "cost_needed": money_str((pricing(least) if priced else None) or Decimal("0")),
        "period": budget.period,
        "period_end": utc_iso(period_end, "auto"),
        "reset_at": utc_iso(period_end, "auto"),
    }


def _refusal_message(details: dict[str, Any]) -> str:
    """The refusal in words: how much is left and what to do."""
    tokens_short = details["tokens_left"] is not None and details["tokens_left"] < details["tokens_needed"]
    if tokens_short or details["cost_left"] is None:
        left = f"{details['tokens_left']:,} tokens are left"
        needed = f"needs at least {details['tokens_needed']:,}"
    else:
        left = f"${money_display(details['cost_left'])} is left"
        needed = f"needs at least ${money_display(details['cost_needed'])}"
    return (f"This request would go over your budget: {left} this period and it {needed}. "
            f"Wait for the reset at {details['reset_at']}, or ask an administrator to raise your limit.")


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


def _token_budget(token: ApiToken, user: User) -> Budget:
    """An API token's own budget as it stands, read under the token row's lock (taken here with a
    no-op UPDATE, which locks on PostgreSQL and SQLite alike, to the caller's commit): its limits,
    what its settled usage rows of the user's current budget period used, and what its open holds
    take. An unsaved Budget, so `_room` and `_limit_details` read it as they read the user's."""
    ApiToken.objects.filter(pk=token.pk).update(token_limit=F("token_limit"))
    token.refresh_from_db(fields=["token_limit", "cost_limit"])
    period = Budget.objects.for_user(user).period
    start, _ = period_bounds(period, user.tzinfo)
    used = ApiUsageLog.objects.finished().filter(api_token=token, created_at__gte=start).aggregate(
        t=Coalesce(Sum("total_tokens"), 0),
        c=Coalesce(Sum(Coalesce("actual_cost", "cost_estimate")), Decimal("0")))
    held = BudgetReservation.objects.filter(api_token=token, state=BudgetReservation.State.HELD).aggregate(
        t=Coalesce(Sum("tokens"), 0), c=Coalesce(Sum("cost"), Decimal("0")))
    return Budget(period=period, period_start=start, token_limit=token.token_limit, cost_limit=token.cost_limit,
                  tokens_used=int(used["t"]), cost_used=Decimal(used["c"]), tokens_held=int(held["t"]),
                  cost_held=Decimal(held["c"]))


def _refuse_for_token(token: ApiToken, user: User, budget: Budget, prompt: int, asked: int, least: int,
                      pricing: Pricing) -> ClientError:
    _, end = period_bounds(budget.period, user.tzinfo)
    details = {**_limit_details(budget, prompt, asked, least, pricing, end), "api_token": token.pk}
    message = _refusal_message(details).replace("your budget", f"the budget of the API token '{token.label}'")
    return ClientError("TOKEN_LIMIT_EXCEEDED", message, details)


def reserve(user: User, request_id: str, tokens: int, cost: Decimal | Pricing = Decimal("0"), *,
            output_tokens: int = 0, min_output_tokens: int | None = None, ttl_seconds: int | None = None,
            api_token: ApiToken | None = None) -> Hold:
    """Hold `tokens` of prompt plus `output_tokens` of answer (and their cost) on the user's budget
    for one exchange, or raise TOKEN_LIMIT_EXCEEDED. Runs in the caller's transaction.

    With `min_output_tokens`, an answer the budget cannot cover in full is held at what is left
    (`Hold.clamped`), down to `min(output_tokens, min_output_tokens)`; only below that is the
    request refused. `cost` is a fixed cost, or a function of the output tokens (the prompt with
    that answer, at the model's price; None for a model of unknown price, which only the token
    limit then limits), priced only when the budget has a cost limit.

    The size is read from the budget row, then held by one conditional UPDATE (`used + held +
    asked <= limit`, decided by the database under the row lock, so parallel requests can never all
    pass a check only some of them can afford). When that UPDATE finds the room gone, or the read
    leaves too little, the row is read again under its lock (SELECT FOR UPDATE) and decided for good.

    With an `api_token` that carries its own budget, the request must also fit that budget, which is
    read under the token row's lock, taken first (lock order: the token row, then the budget row);
    the answer's allowance is the least either leaves, and the hold counts against both.
    """
    assert transaction.get_connection().in_atomic_block, "reserve() must run inside the caller's transaction"
    pricing = cost if callable(cost) else _fixed(cost)
    least = output_tokens if min_output_tokens is None else min(output_tokens, min_output_tokens)
    asked = output_tokens
    token_budget = None
    if api_token is not None and api_token.has_budget:
        token_budget = _token_budget(api_token, user)
        asked, _ = _room(token_budget, tokens, output_tokens, pricing)
        if asked < least:
            raise _refuse_for_token(api_token, user, token_budget, tokens, output_tokens, least, pricing)
    budget = current_budget(user)
    for locked in (False, True):
        if locked:
            budget = Budget.objects.select_for_update().get(pk=budget.pk)
        output, held_cost = _room(budget, tokens, asked, pricing)
        if token_budget is not None and token_budget.cost_limit is not None and budget.cost_limit is None:
            held_cost = pricing(output) or Decimal("0")  # the token's limit counts the hold's cost
        if output >= least and _hold(budget.pk, tokens + output, held_cost):
            break
    else:
        _, end = period_bounds(budget.period, user.tzinfo)
        details = _limit_details(budget, tokens, output_tokens, least, pricing, end)
        raise ClientError("TOKEN_LIMIT_EXCEEDED", _refusal_message(details), details)
    now = timezone.now()
    ttl = ttl_seconds if ttl_seconds is not None else settings.CHATLIMA_RESERVATION_TTL_SECONDS
    reservation = insert_row(
        BudgetReservation, user=user, request_id=request_id, tokens=tokens + output, cost=held_cost, created_at=now,
        expires_at=now + timedelta(seconds=ttl), api_token=api_token,
    )
    return Hold(reservation.pk, tokens + output, held_cost, output, output < output_tokens)


def _mark_closed(reservation_id: int, state: str) -> bool:
    """Move a reservation out of `held` (a compare-and-set: True for exactly one caller)."""
    return update_where(BudgetReservation, {"state": state, "closed_at": timezone.now()},
                        pk=reservation_id, state=BudgetReservation.State.HELD) == 1


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
    Returns the budget as it now stands (as the update left it, under the row lock it holds).
    """
    assert transaction.get_connection().in_atomic_block, "settle_reservation() must run inside a transaction"
    release_tokens, release_cost = 0, Decimal("0")
    if reservation_id is not None and _mark_closed(reservation_id, state):
        if held_tokens is None or held_cost is None:
            held_tokens, held_cost = BudgetReservation.objects.values_list("tokens", "cost").get(pk=reservation_id)
        release_tokens, release_cost = held_tokens, held_cost
    # RETURNING: the row as this UPDATE left it, under its lock; no second statement to read it back.
    params = [release_tokens, release_cost, tokens, cost or Decimal("0"), user_id]
    return update_returning(Budget, COUNT_SETTLED, params)


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
