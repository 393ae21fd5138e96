"""The chat page's attachment list as the server draws it (templates/chat/_attachments.html):
names escaped, tokens with separators, each one's cost at the selected model's input price (or
"price unknown"), a URL's fetch time and Refetch, Remove named after it; the estimate line's share."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.test import Client

from chat.attachments.models import Attachment
from chat.models import Conversation
from chatlima.formats import money_short
from usage.models import CatalogueEntry
from usage.pricing import price_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def attach(conversation, **fields) -> Attachment:
    defaults = {"kind": "file", "name": "notes.md", "format": "markdown", "text": "x", "tokens": 12_345,
                "tokens_model": conversation.model}
    return Attachment.objects.create(owner=conversation.owner, conversation=conversation, **{**defaults, **fields})


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="chat-data" type="application/json">(.*?)</script>', html, re.S).group(1))


def test_the_page_lists_each_attachment_with_its_tokens_and_cost(owner, owner_client, fake_openai):
    conversation = Conversation.objects.create(owner=owner, public_id="conv_page", model="gpt-4o-mini")
    attach(conversation, name="<b>notes</b>.md")
    attach(conversation, kind="url", name="Harbour timetable", format="html", url="https://example.com/t",
           tokens=2_000, fetched_at=datetime(2026, 11, 30, 9, 5, tzinfo=UTC))
    html = owner_client.get("/c/conv_page/").content.decode()
    assert page_data(html)["selected_model"] == "gpt-4o-mini"  # its provider has a key (the fake's)

    assert "&lt;b&gt;notes&lt;/b&gt;.md" in html and "<b>notes</b>" not in html
    assert 'aria-label="Remove &lt;b&gt;notes&lt;/b&gt;.md"' in html
    assert '<span data-field="tokens">12,345</span> tokens' in html
    price = price_for("gpt-4o-mini")
    assert price is not None and price.input_per_mtok > 0
    cost = price.input_per_mtok * 12_345 / 1_000_000
    assert "about <span class=\"money\" data-exact=" in html and f"${money_short(cost)}</span> on each message" in html
    assert 'aria-label="Refetch Harbour timetable"' in html and "2026-11-30 09:05 UTC" in html
    assert html.count('aria-label="Refetch') == 1  # a file is not fetched again
    # The estimate line says the attachments' share, and the script gets the list.
    assert re.search(r'id="next-estimate-attachments">, including <span>14,345</span> of attachments', html)
    data = page_data(html)
    assert [a["name"] for a in data["attachments"]] == ["<b>notes</b>.md", "Harbour timetable"]
    assert data["gauge"]["attachment_tokens"] == 14_345


def test_an_unpriced_model_says_price_unknown(owner, owner_client, fake_openai):
    CatalogueEntry.objects.create(provider="openai", model_id="acme-unpriced-7b", display_name="Acme Unpriced 7B")
    conversation = Conversation.objects.create(owner=owner, public_id="conv_page", model="acme-unpriced-7b")
    attach(conversation, tokens_model="acme-unpriced-7b")
    html = owner_client.get("/c/conv_page/").content.decode()
    assert page_data(html)["selected_model"] == "acme-unpriced-7b" and price_for("acme-unpriced-7b") is None
    assert '<span data-field="cost">price unknown</span>' in html


def test_a_new_chat_has_no_list_and_no_share(owner_client):
    html = owner_client.get("/").content.decode()
    assert 'id="attachment-list" class="attachment-list" aria-label="Attached files and pages" hidden' in html
    assert 'id="next-estimate-attachments" hidden' in html
    assert page_data(html)["attachments"] == []
    # The button opens a file input that takes the kinds the server reads.
    accept = re.search(r'id="attach-file-input" multiple accept="([^"]+)"', html).group(1).split(",")
    assert {".md", ".pdf", ".csv", ".json", ".txt", ".py", "text/*"} <= set(accept)


def test_a_strangers_conversation_page_shows_nothing_of_it(owner, stranger, owner_client):
    theirs = Conversation.objects.create(owner=stranger, public_id="conv_theirs", model="gpt-4o-mini")
    attach(theirs, name="secret-plans.md")
    response = owner_client.get("/c/conv_theirs/")
    assert response.status_code == 404 and b"secret-plans" not in response.content
