"""Search as you type asks the chat page for its conversation list alone (X-ChatLima-Fragment):
the same server-side search as the full page (chat/search.py), the owner's conversations only."""

from __future__ import annotations

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db

FRAGMENT = {"HTTP_X_CHATLIMA_FRAGMENT": "conversations"}


def test_the_fragment_is_the_list_the_full_page_shows(owner, stranger, owner_client):
    Conversation.objects.create(owner=owner, title="Kyoto trains")
    Conversation.objects.create(owner=owner, title="Garden ideas")
    Conversation.objects.create(owner=stranger, title="Kyoto secrets")
    response = owner_client.get("/?q=kyoto", **FRAGMENT)
    assert response.status_code == 200 and "X-ChatLima-Fragment" in response["Vary"]
    html = response.content.decode()
    assert "<html" not in html and 'id="conversation-list"' in html
    assert "Kyoto trains" in html and "Garden ideas" not in html and "Kyoto secrets" not in html
    assert "1 found for “kyoto”" in html
    full = owner_client.get("/?q=kyoto").content.decode()
    assert html.split('<ul class="conversation-list"')[1].split("</ul>")[0] in full
    everything = owner_client.get("/", **FRAGMENT).content.decode()
    assert "Garden ideas" in everything and 'id="search-summary"' not in everything


def test_a_strangers_conversation_page_is_404_for_the_fragment_too(owner, stranger_client):
    conversation = Conversation.objects.create(owner=owner, title="Mine")
    assert stranger_client.get(f"/c/{conversation.public_id}/?q=x", **FRAGMENT).status_code == 404
