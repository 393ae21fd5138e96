"""The chat page's server-rendered transcript with versions: only the live thread in the main line,
an answer's earlier versions each with its own figures, an edited message's earlier text and cost."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from chat.models import Message
from tests.pages.conftest import make_exchange

pytestmark = pytest.mark.django_db


def test_the_page_shows_the_live_thread_with_versions_and_earlier_texts(owner, owner_client):
    conversation, question, first = make_exchange(owner, user_text="Old question", answer="First answer",
                                                  completion_tokens=7, cost="0.00001000")
    # A regeneration: a second answer to the same question replaced the first.
    moment = timezone.now()
    second = Message.objects.create(
        owner=owner, conversation=conversation, role=Message.Role.ASSISTANT, content="Second answer",
        model="offline-demo", timestamp=moment, completion_tokens=4, total_tokens=40, cost="0.00002000",
        figures_source="provider", user_message=question, replaces=first)
    Message.objects.filter(pk=first.pk).update(superseded_at=moment)
    page = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    articles = re.findall(r'<article class="message message-(\w+)', page)
    assert articles == ["user", "assistant"]
    assert "Version 2 of 2" in page and 'aria-label="Previous version"' in page
    assert f'data-version-id="{first.public_id}"' in page and "First answer" in page
    assert 'data-badge="sends" data-sends="2">over 2 sends' in page
    assert "7 tokens out" in page and "4 tokens out" in page  # each version its own figures

    # An edit: a new question replaced the old one and took its answers out of the thread.
    later = timezone.now()
    edited = Message.objects.create(owner=owner, conversation=conversation, role=Message.Role.USER,
                                    content="New question", timestamp=later, prompt_tokens=9, replaces=question,
                                    figures_source="provider")
    Message.objects.filter(pk__in=[question.pk, second.pk]).update(superseded_at=later)
    page = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert re.findall(r'<article class="message message-(\w+)', page) == ["user"]
    assert f'data-message-id="{edited.public_id}"' in page and "Second answer" not in page
    assert '<span class="edited-flag">edited</span>' in page and "<summary>Earlier version</summary>" in page
    assert '<div class="earlier-text plain">Old question</div>' in page
    # Both versions of the old question's answer: $0.00003, 39 + 40 tokens.
    assert "Its 2 answers cost" in page and 'data-exact="0.00003"' in page and "(79 tokens)" in page
