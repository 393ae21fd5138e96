"""Limits under real concurrency: uploads at once cannot pass a conversation's limits together.

Needs PostgreSQL's row locks and concurrent connections (as in CI)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from chat.attachments.models import Attachment
from chat.models import Conversation
from tests.attachments.helpers import upload
from tests.conftest import bearer_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL for concurrent writers"),
]


def test_uploads_at_once_stay_within_the_count_limit(owner, settings):
    settings.CHATLIMA_ATTACHMENTS_PER_CONVERSATION = 2
    Conversation.objects.create(owner=owner, public_id="conv_race", model="gpt-4o")
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send(n: int) -> None:
        try:
            client = bearer_client(owner)
            barrier.wait()
            response = client.post("/api/v1/conversations/conv_race/attachments",
                                   {"file": upload(f"{n}.txt", f"file number {n}")}, format="multipart")
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201, 201, 400, 400]
    assert Attachment.objects.filter(conversation__public_id="conv_race").count() == 2
