"""A big push costs a bounded number of queries, and keeps the totals rule of recompute_totals()."""

from __future__ import annotations

import pytest
from django.db import connection

from chat.models import TOTAL_FIELDS, Conversation
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


def test_bulk_totals_agree_with_recompute_totals(owner_api, owner):
    body = {"conversations": [make_conversation(f"conv_{k}", n, tokens=k + 1) for k, n in enumerate((0, 1, 2, 7))]}
    owner_api.post("/api/v1/sync", body, format="json")
    for conv in Conversation.objects.filter(owner=owner):
        bulk = {name: getattr(conv, name) for name in TOTAL_FIELDS}
        conv.recompute_totals(save=False)
        assert bulk == {name: getattr(conv, name) for name in TOTAL_FIELDS}, conv.public_id
