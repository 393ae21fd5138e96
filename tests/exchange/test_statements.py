"""The hot path's literal statements (chat/exchange/__init__.py) store and read what the ORM would."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from chat.exchange.prepare import _history, _stamp_conversation
from chat.exchange.settle import add_to_conversation
from chat.models import Conversation, Message
from chat.providers.base import Usage
from usage import budgets
from usage.models import Budget

pytestmark = pytest.mark.django_db


def test_adding_to_a_conversation_moves_each_total_and_counts_a_first_actual_cost_from_null(owner):
    conversation = Conversation.objects.create(owner=owner, title="t", last_message_preview="before")
    usage = Usage(prompt_tokens=7, completion_tokens=5, total_tokens=12, cached_tokens=2, reasoning_tokens=1)
    add_to_conversation(conversation.pk, usage, Decimal("0.00000123"), None, 4, None)
    conversation.refresh_from_db()
    assert (conversation.actual_cost, conversation.last_message_preview, conversation.version) == (None, "before", 4)
    add_to_conversation(conversation.pk, usage, Decimal("0.00000001"), Decimal("0.5"), 5, "an answer")
    add_to_conversation(conversation.pk, usage, None, None, 6, None)
    conversation.refresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens, conversation.total_tokens) == (21, 15, 36)
    assert (conversation.cached_tokens, conversation.reasoning_tokens) == (6, 3)
    assert conversation.estimated_cost == Decimal("0.00000124")
    assert conversation.actual_cost == Decimal("0.5")
    assert (conversation.last_message_preview, conversation.version) == ("an answer", 6)
    assert timezone.now() - conversation.updated_at < timezone.timedelta(seconds=60)


def test_stamping_a_conversation_counts_its_new_messages_and_dates_them(owner):
    conversation = Conversation.objects.create(owner=owner, title="t", message_count=2)
    now = timezone.now()
    _stamp_conversation(conversation, 2, "offline-demo", "x" * 150, 9, now)
    conversation.refresh_from_db()
    assert (conversation.message_count, conversation.version, conversation.model, conversation.last_model) == (
        4, 9, "offline-demo", "offline-demo")
    assert (conversation.updated_at, conversation.last_message_at) == (now, now)
    assert conversation.last_message_preview == "x" * 100 + "..."


def test_a_settled_reservation_moves_the_budget_from_held_to_used(owner):
    with transaction.atomic():
        hold = budgets.reserve(owner, "msg_1", 100, Decimal("0.25"))
        budgets.settle_reservation(owner.pk, hold.reservation_id, 40, Decimal("0.00000007"),
                                   held_tokens=hold.tokens, held_cost=hold.cost)
    budget = Budget.objects.get(user=owner)
    assert (budget.tokens_held, budget.cost_held) == (0, Decimal("0"))
    assert (budget.tokens_used, budget.cost_used) == (40, Decimal("0.00000007"))


def test_the_history_read_is_the_querysets_rows_in_its_order(owner):
    conversation = Conversation.objects.create(owner=owner, title="t")
    other = Conversation.objects.create(owner=owner, title="other")
    now = timezone.now()
    made = []
    kinds = [  # (role, content, status, superseded): only live, stored, non-empty user/assistant text counts
        ("user", "q1", "complete", False), ("assistant", "a1", "complete", False),
        ("system", "sys", "complete", False), ("user", "q2", "complete", True), ("assistant", "", "error", False),
        ("assistant", "half", "streaming", False), ("assistant", "stopped", "cancelled", False),
        ("user", "q3", "complete", False), ("user", "same instant", "complete", False),
    ]
    for n, (role, content, status, superseded) in enumerate(kinds):
        made.append(Message.objects.create(
            owner=owner, conversation=conversation, role=role, content=content, status=status,
            timestamp=now + timezone.timedelta(seconds=min(n, 7)), superseded_at=now if superseded else None))
    Message.objects.create(owner=owner, conversation=other, role="user", content="elsewhere", timestamp=now)
    expected = list(
        conversation.messages.filter(role__in=[Message.Role.USER, Message.Role.ASSISTANT], superseded_at__isnull=True)
        .exclude(status=Message.Status.STREAMING).exclude(content="")
        .order_by("-timestamp", "-pk").values_list("pk", "role", "content"))
    assert [row[2] for row in expected] == ["same instant", "q3", "stopped", "a1", "q1"]
    # Pages of 2 (LIMIT/OFFSET) give the same rows as one read.
    assert [tuple(row) for row in _history(conversation.pk, None, 2)] == expected
    # Before a message: strictly earlier rows, ties broken by pk (the last two share a timestamp).
    cut = made[-1]
    before = [tuple(row) for row in _history(conversation.pk, (cut.timestamp, cut.pk), 50)]
    assert before == [row for row in expected if row[0] != cut.pk]
