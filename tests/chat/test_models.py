from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chat.ids import is_valid_id, new_conversation_id, new_message_id
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_server_made_ids_have_the_contract_shape():
    assert re.fullmatch(r"conv_\d{13}_[a-z0-9]{9}", new_conversation_id())
    assert re.fullmatch(r"msg_\d{13}_[a-z0-9]{9}", new_message_id())


@pytest.mark.parametrize("value", ["conv_1", "msg_1753195195759_ei5l6ns9o", "a" * 64, "A-b_9"])
def test_valid_client_ids_are_accepted(value):
    assert is_valid_id(value)


@pytest.mark.parametrize("value", ["", "a" * 65, "conv 1", "conv/1", "../etc", "ü", None, 7])
def test_invalid_client_ids_are_refused(value):
    assert not is_valid_id(value)


def test_model_validation_refuses_a_bad_public_id(owner):
    conversation = Conversation(owner=owner, public_id="bad id!")
    with pytest.raises(ValidationError):
        conversation.full_clean()


def test_a_conversation_id_is_unique_per_user(owner):
    Conversation.objects.create(owner=owner, public_id="conv_1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(owner=owner, public_id="conv_1")


def test_two_users_with_the_same_client_id_stay_apart(owner, stranger):
    mine = Conversation.objects.create(owner=owner, public_id="conv_1", title="mine")
    theirs = Conversation.objects.create(owner=stranger, public_id="conv_1", title="theirs")
    Message.objects.create(owner=owner, conversation=mine, public_id="msg_1", role="user", content="hello")
    Message.objects.create(owner=stranger, conversation=theirs, public_id="msg_1", role="user", content="bonjour")
    assert Conversation.objects.for_user(owner).get(public_id="conv_1").title == "mine"
    assert Conversation.objects.for_user(stranger).get(public_id="conv_1").title == "theirs"
    assert mine.messages.get().content == "hello"


def test_a_message_id_is_unique_per_user(owner):
    conversation = Conversation.objects.create(owner=owner)
    Message.objects.create(owner=owner, conversation=conversation, public_id="msg_1", role="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(owner=owner, conversation=conversation, public_id="msg_1", role="assistant")


def test_deleted_conversations_are_hidden_from_for_user(owner):
    from django.utils import timezone

    Conversation.objects.create(owner=owner, public_id="conv_gone", deleted_at=timezone.now())
    assert not Conversation.objects.for_user(owner).filter(public_id="conv_gone").exists()


def test_totals_are_derived_from_the_messages_with_decimal_costs(owner):
    conversation = Conversation.objects.create(owner=owner, model="gpt-4o-mini")
    for n in range(2):
        user_msg = Message.objects.create(
            owner=owner, conversation=conversation, role="user", content=f"question {n}", prompt_tokens=32
        )
        Message.objects.create(
            owner=owner, conversation=conversation, role="assistant", content=f"answer {n}",
            user_message=user_msg, completion_tokens=120, total_tokens=152, reasoning_tokens=20,
            cached_tokens=8, cost=Decimal("0.000154"), model="gpt-4o-mini",
        )
    conversation.recompute_totals()
    conversation.refresh_from_db()
    assert conversation.usage_dict() == {
        "input_tokens": 64,
        "output_tokens": 240,
        "total_tokens": 304,
        "reasoning_tokens": 40,
        "cached_tokens": 16,
        "cost": "0.00030800",
        "message_count": 4,
    }
    assert isinstance(conversation.estimated_cost, Decimal)
    assert conversation.last_message_preview == "answer 1"
    assert conversation.last_model == "gpt-4o-mini"


def test_elapsed_time_is_reported_in_whole_seconds(owner):
    conversation = Conversation.objects.create(owner=owner)
    message = Message(owner=owner, conversation=conversation, role="assistant", elapsed_ms=11_400)
    assert message.elapsed_time == 11
