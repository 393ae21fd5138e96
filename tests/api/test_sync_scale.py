"""A big push costs a bounded number of queries, and keeps the totals rule (chat.models.derive_totals)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from chat.models import TOTAL_FIELDS, Conversation, Message, preview_of
from tests.api.conftest import make_conversation

pytestmark = pytest.mark.django_db


def test_a_push_of_2000_messages_costs_a_bounded_number_of_queries(owner_api, owner, django_assert_max_num_queries):
    body = {"conversations": [make_conversation(f"conv_{k:03d}", 20) for k in range(100)]}
    # Auth, the clock, two lookups, inserts in batches, two aggregates, one upsert: about 21 on PostgreSQL,
    # about 70 on SQLite (its 999-parameter limit makes insert batches of ~45 rows); never one per message.
    with django_assert_max_num_queries(30 if connection.vendor == "postgresql" else 100):
        response = owner_api.post("/api/v1/sync", body, format="json")
    assert response.status_code == 200
    assert Conversation.objects.filter(owner=owner).count() == 100
    with django_assert_max_num_queries(20):
        pulled = owner_api.get("/api/v1/sync", {"limit": 100}).json()
    assert sum(len(c["messages"]) for c in pulled["conversations"]) == 2000


def expected_totals(conv: Conversation) -> dict:
    """The rule worked out in Python from the stored messages, independently of derive_totals()."""
    messages = list(Message.objects.filter(conversation=conv))
    answers = [m for m in messages if m.role == Message.Role.ASSISTANT]
    last = max(messages, key=lambda m: (m.timestamp, m.pk), default=None)
    return {
        "input_tokens": sum(m.prompt_tokens or 0 for m in messages if m.role == Message.Role.USER),
        "output_tokens": sum(m.completion_tokens or 0 for m in answers),
        "total_tokens": sum((m.total_tokens if m.total_tokens is not None else m.completion_tokens) or 0 for m in answers),
        "reasoning_tokens": sum(m.reasoning_tokens or 0 for m in answers),
        "cached_tokens": sum(m.cached_tokens or 0 for m in answers),
        "estimated_cost": sum((m.cost or Decimal("0") for m in answers), Decimal("0")),
        "actual_cost": None if all(m.actual_cost is None for m in answers) else sum(m.actual_cost or 0 for m in answers),
        "message_count": len(messages),
        "last_message_preview": preview_of(last.content) if last else "",
        "last_message_at": last.timestamp if last else None,
        "last_model": (last.model if last else "") or conv.model,
    }


def test_a_push_stores_the_totals_rule_for_every_conversation(owner_api, owner):
    body = {"conversations": [make_conversation(f"conv_{k}", n, tokens=k + 1) for k, n in enumerate((0, 1, 2, 7))]}
    owner_api.post("/api/v1/sync", body, format="json")
    conversations = list(Conversation.objects.filter(owner=owner))
    assert len(conversations) == 4
    for conv in conversations:
        assert {name: getattr(conv, name) for name in TOTAL_FIELDS} == expected_totals(conv), conv.public_id
        assert conv.message_count == len(next(c for c in body["conversations"] if c["id"] == conv.public_id)["messages"])


def test_recompute_totals_applies_the_same_rule_to_one_conversation(owner):
    conv = Conversation.objects.create(owner=owner, public_id="conv_one", model="fallback-model")
    question = Message.objects.create(owner=owner, conversation=conv, role="user", content="q" * 150, prompt_tokens=7)
    Message.objects.create(owner=owner, conversation=conv, role="assistant", content="a", completion_tokens=5,
                           reasoning_tokens=2, cost=Decimal("0.25"), actual_cost=Decimal("0.5"), user_message=question)
    Message.objects.create(owner=owner, conversation=conv, role="assistant", content="b", completion_tokens=3,
                           total_tokens=11, cached_tokens=4, model="m2", timestamp=question.timestamp)
    conv.recompute_totals()
    conv.refresh_from_db()
    assert {name: getattr(conv, name) for name in TOTAL_FIELDS} == expected_totals(conv)
    assert (conv.input_tokens, conv.output_tokens, conv.total_tokens, conv.estimated_cost) == (7, 8, 16, Decimal("0.25"))
