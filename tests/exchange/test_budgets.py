"""Budgets: periods in the user's zone, holds taken by a conditional update, rollover, the payload."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from chatlima.errors import ClientError
from tests.conftest import make_user
from usage import budgets
from usage.models import ApiUsageLog, Budget, BudgetReservation


def _limit(user, tokens=None, cost=None, period="monthly"):
    Budget.objects.filter(user=user).update(token_limit=tokens, cost_limit=cost, period=period)


def _reserve(user, request_id, tokens, cost=Decimal("0")):
    with transaction.atomic():
        return budgets.reserve(user, request_id, tokens, cost)


def _usage_row(user, request_id, total, when=None, cost=Decimal("0")):
    return ApiUsageLog.objects.create(
        user=user, request_id=request_id, provider="offline", model_name="offline-demo",
        prompt_tokens=total // 2, completion_tokens=total - total // 2, total_tokens=total,
        cost_estimate=cost, status=ApiUsageLog.Status.SUCCESS, created_at=when or timezone.now(),
    )


def test_monthly_period_starts_at_local_midnight_of_the_first():
    tz = zoneinfo.ZoneInfo("Asia/Tokyo")
    # 2026-03-31 20:00 UTC is already April 1st in Tokyo.
    start, end = budgets.period_bounds("monthly", tz, datetime(2026, 3, 31, 20, 0, tzinfo=UTC))
    assert start == datetime(2026, 4, 1, tzinfo=tz)
    assert end == datetime(2026, 5, 1, tzinfo=tz)


def test_weekly_and_daily_periods_follow_the_users_days():
    tz = zoneinfo.ZoneInfo("America/New_York")
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # Wednesday 22:00 in New York
    assert budgets.period_bounds("daily", tz, now) == (datetime(2026, 11, 25, tzinfo=tz), datetime(2026, 11, 26, tzinfo=tz))
    assert budgets.period_bounds("weekly", tz, now) == (datetime(2026, 11, 23, tzinfo=tz), datetime(2026, 11, 30, tzinfo=tz))


def test_reserve_refuses_what_the_budget_cannot_cover(db):
    user = make_user("u1")
    _limit(user, tokens=1000)
    _reserve(user, "msg_a", 600)
    with pytest.raises(ClientError) as refused:
        _reserve(user, "msg_b", 600)
    assert refused.value.code == "TOKEN_LIMIT_EXCEEDED"
    details = refused.value.details
    assert details["token_limit"] == 1000 and details["tokens_held"] == 600 and details["tokens_requested"] == 600
    assert details["period_end"].endswith("Z")
    budget = Budget.objects.get(user=user)
    assert budget.tokens_held == 600
    assert BudgetReservation.objects.filter(user=user).count() == 1


def test_cost_limit_is_checked_like_the_token_limit(db):
    user = make_user("u2")
    _limit(user, tokens=None, cost=Decimal("0.010000"))
    _reserve(user, "msg_a", 10, Decimal("0.006"))
    with pytest.raises(ClientError):
        _reserve(user, "msg_b", 10, Decimal("0.006"))
    # A callable cost is priced only when there is a cost limit.
    _limit(user, tokens=None, cost=None)
    called = []
    _reserve(user, "msg_c", 10, lambda output: called.append(1) or Decimal("5"))
    assert called == []


def test_settle_moves_the_hold_to_used_once(db):
    user = make_user("u3")
    _limit(user, tokens=1000)
    hold = _reserve(user, "msg_a", 500)
    with transaction.atomic():
        budgets.settle_reservation(user.pk, hold.reservation_id, 120, Decimal("0.001"))
    with transaction.atomic():
        # A second settle of the same hold must not take it off twice.
        budgets.settle_reservation(user.pk, hold.reservation_id, 0, Decimal("0"))
    budget = Budget.objects.get(user=user)
    assert (budget.tokens_held, budget.tokens_used, budget.cost_used) == (0, 120, Decimal("0.001"))
    assert BudgetReservation.objects.get(pk=hold.reservation_id).state == "settled"


def test_expired_holds_are_released(db):
    user = make_user("u4")
    _limit(user, tokens=1000)
    hold = _reserve(user, "msg_a", 700)
    live = _reserve(user, "msg_b", 100)
    BudgetReservation.objects.filter(pk=hold.reservation_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert budgets.expire_stale_reservations() == 1
    assert BudgetReservation.objects.get(pk=hold.reservation_id).state == "expired"
    assert BudgetReservation.objects.get(pk=live.reservation_id).state == "held"
    assert Budget.objects.get(user=user).tokens_held == 100
    _reserve(user, "msg_c", 800)  # the freed room is usable again


def test_period_rolls_over_on_its_own_and_counts_usage_rows_only(db):
    user = make_user("u5")
    _limit(user, tokens=1000)
    last_month = timezone.now() - timedelta(days=40)
    Budget.objects.filter(user=user).update(period_start=last_month, tokens_used=990, cost_used=Decimal("3"))
    _usage_row(user, "msg_old", 990, when=last_month)
    _usage_row(user, "msg_new", 30)
    budget = budgets.current_budget(user)
    start, _ = budgets.period_bounds("monthly", user.tzinfo)
    assert budget.period_start == start
    assert budget.last_reset_at is not None
    assert budget.tokens_used == 30


def test_a_new_budget_belongs_to_the_current_period(db):
    user = make_user("u6")
    budget = budgets.current_budget(user)
    assert budget.period_start == budgets.period_bounds(budget.period, user.tzinfo)[0]
    assert budget.last_reset_at is None


def test_budget_payload_estimates_days_from_the_recent_daily_rate(db):
    user = make_user("u7")
    _limit(user, tokens=100_000)
    Budget.objects.filter(user=user).update(tokens_used=30_000)
    _usage_row(user, "msg_1", 7_000)  # 1,000 a day over the last 7 days
    payload = budgets.budget_payload(user)
    assert payload["token_limit"] == 100_000
    assert payload["total_tokens_used"] == 30_000
    assert payload["remaining_tokens"] == 70_000
    assert payload["estimated_days_until_limit"] == 70.0
    assert set(payload) >= {"period", "period_start", "last_reset_at", "token_limit", "total_tokens_used",
                            "remaining_tokens", "cost_limit", "cost_used", "estimated_days_until_limit"}


def test_budget_payload_has_no_estimate_when_unlimited_or_unused(db):
    user = make_user("u8")
    _limit(user, tokens=None)
    _usage_row(user, "msg_1", 7_000)
    assert budgets.budget_payload(user)["estimated_days_until_limit"] is None
    other = make_user("u9")
    _limit(other, tokens=5000)
    assert budgets.budget_payload(other)["estimated_days_until_limit"] is None


def test_budget_endpoint_answers_for_the_caller_only(owner_api, stranger):
    _limit(stranger, tokens=1)
    response = owner_api.get("/api/v1/budget")
    assert response.status_code == 200
    assert response.json()["token_limit"] == 1_000_000


def test_budget_endpoint_needs_credentials(client, db):
    response = client.get("/api/v1/budget")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.django_db(transaction=True)
def test_parallel_holds_on_postgresql_never_exceed_the_limit():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("real parallel writers need PostgreSQL (SQLite takes one writer at a time)")
    user = make_user("racer")
    _limit(user, tokens=1000)

    def attempt(i: int) -> str:
        try:
            _reserve(user, f"msg_{i}", 300)
            return "held"
        except ClientError as err:
            return err.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, range(24)))
    assert results.count("held") == 3
    assert results.count("TOKEN_LIMIT_EXCEEDED") == 21
    assert Budget.objects.get(user=user).tokens_held == 900


def _clamped(user, request_id, prompt, asked, cost=Decimal("0"), least=256):
    with transaction.atomic():
        return budgets.reserve(user, request_id, prompt, cost, output_tokens=asked, min_output_tokens=least)


def test_an_answer_the_budget_cannot_cover_is_held_at_what_is_left(db):
    user = make_user("clamp1")
    _limit(user, tokens=1000)
    Budget.objects.filter(user=user).update(tokens_used=600)
    hold = _clamped(user, "msg_a", 14, 2048)
    assert (hold.output_tokens, hold.tokens, hold.clamped) == (386, 400, True)
    assert BudgetReservation.objects.get(pk=hold.reservation_id).tokens == 400
    assert Budget.objects.get(user=user).tokens_held == 400


def test_an_answer_that_fits_is_held_whole(db):
    user = make_user("clamp2")
    _limit(user, tokens=1000)
    hold = _clamped(user, "msg_a", 14, 500)
    assert (hold.output_tokens, hold.tokens, hold.clamped) == (500, 514, False)


def test_below_the_least_answer_the_refusal_says_what_is_left(db):
    user = make_user("clamp3")
    _limit(user, tokens=1000)
    Budget.objects.filter(user=user).update(tokens_used=700, tokens_held=31)
    with pytest.raises(ClientError) as refused:
        _clamped(user, "msg_a", 14, 2048)  # 269 left: 14 + 256 = 270 needed
    details = refused.value.details
    assert (details["tokens_left"], details["tokens_needed"], details["tokens_requested"]) == (269, 270, 2062)
    assert (details["prompt_tokens"], details["min_output_tokens"]) == (14, 256)
    assert "269 tokens are left" in refused.value.message and "needs at least 270" in refused.value.message
    assert "raise your limit" in refused.value.message and details["reset_at"] in refused.value.message
    assert BudgetReservation.objects.filter(user=user).count() == 0
    _clamped(user, "msg_b", 13, 2048)  # 13 + 256 fits exactly


def test_an_output_asked_below_the_least_answer_is_never_lowered(db):
    user = make_user("clamp4")
    _limit(user, tokens=100)
    with pytest.raises(ClientError) as refused:
        _clamped(user, "msg_a", 10, 100)
    assert refused.value.details["tokens_needed"] == 110
    assert _clamped(user, "msg_b", 10, 90).clamped is False


def test_a_cost_limit_lowers_the_answer_to_what_its_price_leaves(db):
    user = make_user("clamp5")
    _limit(user, tokens=None, cost=Decimal("0.01000000"))
    Budget.objects.filter(user=user).update(cost_used=Decimal("0.00400000"))

    def price(output: int) -> Decimal:  # $1 per million prompt tokens, $10 per million output tokens
        return (Decimal(100) + 10 * Decimal(output)) / 1_000_000

    hold = _clamped(user, "msg_a", 100, 2048, price)
    # $0.006 left: 100 prompt tokens cost $0.0001, so 590 output tokens ($0.0059) fit and no more.
    assert (hold.output_tokens, hold.cost, hold.clamped) == (590, Decimal("0.006"), True)
    assert Budget.objects.get(user=user).cost_held == Decimal("0.006")
    with pytest.raises(ClientError) as refused:
        _clamped(user, "msg_b", 100, 2048, price)
    details = refused.value.details
    assert (details["cost_left"], details["cost_needed"]) == ("0.00000000", "0.00266000")
    assert "$0.00 is left" in refused.value.message and "needs at least $0.00266" in refused.value.message


def test_a_model_without_a_price_is_limited_by_tokens_only(db):
    user = make_user("clamp6")
    _limit(user, tokens=1000, cost=Decimal("0.00000001"))
    hold = _clamped(user, "msg_a", 14, 2048, lambda output: None)
    assert (hold.output_tokens, hold.cost, hold.clamped) == (986, Decimal("0"), True)


def test_a_hold_sized_from_a_stale_read_is_decided_again_under_the_lock(db, monkeypatch):
    user = make_user("clamp7")
    _limit(user, tokens=1000)
    real = budgets.current_budget

    def stale(user, *args, **kwargs):
        # Another exchange takes 600 tokens between the read and the hold.
        budget = real(user, *args, **kwargs)
        Budget.objects.filter(pk=budget.pk).update(tokens_held=600)
        return budget

    monkeypatch.setattr(budgets, "current_budget", stale)
    hold = _clamped(user, "msg_a", 14, 2048)
    assert (hold.output_tokens, hold.tokens) == (386, 400)
    assert Budget.objects.get(user=user).tokens_held == 1000


@pytest.mark.django_db(transaction=True)
def test_parallel_clamped_holds_on_postgresql_fill_the_budget_exactly():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("real parallel writers need PostgreSQL (SQLite takes one writer at a time)")
    user = make_user("clampracer")
    _limit(user, tokens=2200)

    def attempt(i: int) -> str:
        try:
            return "clamped" if _clamped(user, f"msg_{i}", 14, 600).clamped else "held"
        except ClientError as err:
            return err.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, range(24)))
    # Three whole holds of 614, then 358 left: one answer lowered to 344, then 0 left.
    assert (results.count("held"), results.count("clamped"), results.count("TOKEN_LIMIT_EXCEEDED")) == (3, 1, 20)
    assert Budget.objects.get(user=user).tokens_held == 2200
