"""A token's own budget in `usage.budgets.reserve`: holds, clamps and refusals beside the user's, and
parallel holds on PostgreSQL that never pass the token's limit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from accounts.tokens import issue_token
from chatlima.errors import ClientError
from tests.conftest import make_user
from usage import budgets
from usage.models import Budget, BudgetReservation


def _reserve(user, token, request_id: str, prompt: int, asked: int = 0, least: int | None = None):
    with transaction.atomic():
        return budgets.reserve(user, request_id, prompt, Decimal("0"), output_tokens=asked,
                               min_output_tokens=least, api_token=token)


def test_a_tokens_holds_count_against_its_limit_and_are_released(db):
    user = make_user("holder")
    token, _ = issue_token(user, "ide")
    token.token_limit = 1000
    token.save()
    first = _reserve(user, token, "msg_a", 600)
    with pytest.raises(ClientError) as refused:
        _reserve(user, token, "msg_b", 600)
    assert refused.value.details["tokens_held"] == 600 and refused.value.details["api_token"] == token.pk
    with transaction.atomic():
        budgets.settle_reservation(user.pk, first.reservation_id, 0, Decimal("0"),
                                   state=BudgetReservation.State.RELEASED)
    assert _reserve(user, token, "msg_b", 600).tokens == 600
    assert Budget.objects.get(user=user).tokens_held == 600  # the user's budget held the same


def test_the_stricter_of_the_two_budgets_clamps_the_answer(db):
    user = make_user("clamper")
    Budget.objects.filter(user=user).update(token_limit=5000)
    token, _ = issue_token(user, "small")
    token.token_limit = 400
    token.save()
    hold = _reserve(user, token, "msg_a", 100, asked=2048, least=64)
    assert (hold.output_tokens, hold.clamped) == (300, True)
    token.token_limit = None
    token.save()
    Budget.objects.filter(user=user).update(token_limit=700)
    hold = _reserve(user, token, "msg_b", 100, asked=2048, least=64)
    assert (hold.output_tokens, hold.clamped) == (700 - 400 - 100, True)  # the user's: 400 already held


def test_a_token_without_limits_costs_no_query_more_than_no_token(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = make_user("free")
    token, _ = issue_token(user, "free")
    budgets.current_budget(user)
    with CaptureQueriesContext(connection) as without:
        _reserve(user, None, "msg_a", 100)
    with CaptureQueriesContext(connection) as with_token:
        _reserve(user, token, "msg_b", 100)
    assert len(with_token) == len(without)
    assert BudgetReservation.objects.get(request_id="msg_b").api_token_id == token.pk


@pytest.mark.django_db(transaction=True)
def test_parallel_holds_on_postgresql_never_exceed_the_tokens_limit():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("real parallel writers need PostgreSQL (SQLite takes one writer at a time)")
    user = make_user("token-racer")
    token, _ = issue_token(user, "racer")
    token.token_limit = 1000
    token.save()

    def attempt(i: int) -> str:
        try:
            _reserve(user, token, f"msg_{i}", 300)
            return "held"
        except ClientError as err:
            return err.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(attempt, range(24)))
    assert results.count("held") == 3 and results.count("TOKEN_LIMIT_EXCEEDED") == 21
    assert sum(BudgetReservation.objects.filter(api_token=token).values_list("tokens", flat=True)) == 900
