"""Preparing a send reads the conversation and whether it has attachments in one statement: the
attachments themselves are read only when there are some (chat.attachments.live_conversation)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.attachments.models import Attachment
from chat.exchange import parse_send_body, prepare_exchange
from chat.models import Conversation

pytestmark = pytest.mark.django_db


def _prepare(owner, conversation_id: str):
    body = parse_send_body({"message": "And then?", "conversation_id": conversation_id, "model": "offline-demo"})
    with CaptureQueriesContext(connection) as queries:
        prepared = prepare_exchange(owner, body)
    reads_files = [q["sql"] for q in queries if 'FROM "chat_attachment"' in q["sql"] and "EXISTS" not in q["sql"]]
    return prepared, reads_files


def test_a_conversation_without_files_is_sent_without_reading_them(owner):
    Conversation.objects.create(owner=owner, public_id="conv_plain", title="Plain", model="offline-demo")
    prepared, reads_files = _prepare(owner, "conv_plain")
    assert reads_files == []
    assert prepared.target.metadata["file_count"] == 0 and "<attachment" not in prepared.chat_request.system_prompt


def test_a_conversation_with_a_file_still_sends_it(owner):
    conversation = Conversation.objects.create(owner=owner, public_id="conv_files", title="Files", model="offline-demo")
    Attachment.objects.create(owner=owner, conversation=conversation, kind=Attachment.Kind.FILE, name="notes.md",
                              text="The launch is on Tuesday.", tokens=6, tokens_model="offline-demo")
    prepared, reads_files = _prepare(owner, "conv_files")
    assert len(reads_files) == 1
    assert prepared.target.metadata["file_count"] == 1
    assert "The launch is on Tuesday." in prepared.chat_request.system_prompt


def test_another_users_conversation_is_not_found(owner, stranger):
    Conversation.objects.create(owner=stranger, public_id="conv_theirs", title="Theirs", model="offline-demo")
    from chatlima.errors import ClientError

    with pytest.raises(ClientError) as refused:
        _prepare(owner, "conv_theirs")
    assert refused.value.code == "CONVERSATION_NOT_FOUND"
