"""Fixtures for the page tests: conversations with stored figures, as the exchange leaves them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from chat.models import Conversation, Message


def make_exchange(owner, *, user_text: str = "How many airports?", answer: str = "Japan has **28**.",
                  prompt_tokens: int = 32, completion_tokens: int = 120, reasoning_tokens: int = 0,
                  cost: str = "0.00030900", conversation: Conversation | None = None,
                  figures_source: str = Message.FiguresSource.PROVIDER,
                  status: str = Message.Status.COMPLETE) -> tuple[Conversation, Message, Message]:
    now = timezone.now()
    if conversation is None:
        conversation = Conversation.objects.create(owner=owner, title=user_text[:40], model="offline-demo")
    user_message = Message.objects.create(
        owner=owner, conversation=conversation, role=Message.Role.USER, content=user_text, model="offline-demo",
        timestamp=now, prompt_tokens=prompt_tokens, figures_source=figures_source,
    )
    assistant = Message.objects.create(
        owner=owner, conversation=conversation, role=Message.Role.ASSISTANT, content=answer, model="offline-demo",
        timestamp=now + timedelta(milliseconds=1), completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens, reasoning_tokens=reasoning_tokens, cost=Decimal(cost),
        user_message=user_message, figures_source=figures_source, status=status,
    )
    conversation.recompute_totals()
    return conversation, user_message, assistant


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def stranger_client(stranger) -> Client:
    client = Client()
    client.force_login(stranger)
    return client
