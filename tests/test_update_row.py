"""chatlima.sql.update_row: the hot path's one-statement UPDATEs store what the ORM would."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from chat.models import Conversation
from chatlima.sql import update_row

pytestmark = pytest.mark.django_db


def test_update_row_adds_treating_null_as_zero_and_sets_values_as_the_orm_stores_them(owner):
    conversation = Conversation.objects.create(owner=owner, title="t", actual_cost=None)
    stamp = timezone.now()
    changed = update_row(
        Conversation, {"pk": conversation.pk},
        add={"input_tokens": 7, "estimated_cost": Decimal("0.00000123"), "actual_cost": Decimal("0.5")},
        set={"title": "renamed", "updated_at": stamp},
    )
    update_row(Conversation, {"pk": conversation.pk}, add={"input_tokens": 3, "estimated_cost": Decimal("0.00000001")})
    conversation.refresh_from_db()
    assert changed == 1
    assert conversation.input_tokens == 10
    assert conversation.estimated_cost == Decimal("0.00000124")
    assert conversation.actual_cost == Decimal("0.5")
    assert (conversation.title, conversation.updated_at) == ("renamed", stamp)


def test_update_row_is_a_compare_and_set_on_every_where_field(owner):
    conversation = Conversation.objects.create(owner=owner, title="t")
    assert update_row(Conversation, {"pk": conversation.pk, "title": "other"}, set={"title": "x"}) == 0
    assert update_row(Conversation, {"pk": conversation.pk, "owner_id": owner.pk}, set={"title": "x"}) == 1
    conversation.refresh_from_db()
    assert conversation.title == "x"
