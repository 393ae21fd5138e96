"""The whole mobile story from API.md alone: sign up, push local history, chat, pull back exact figures."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import seed_body

# The exchange runs its database work on worker threads on PostgreSQL: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_offline_model(settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 0


def test_sign_up_push_chat_and_pull_everything_back(db):
    client = APIClient()
    registered = client.post("/api/v1/auth/register", {"username": "mobile", "password": "a-long-passphrase"}, format="json")
    assert registered.status_code == 201, registered.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {registered.json()['token']}")

    body = seed_body()
    assert client.post("/api/v1/sync", body, format="json").status_code == 200
    _, _, cursor = _pull(client, None)

    conv_id = body["conversations"][0]["id"]
    sent = client.post("/api/v1/chat/send", {
        "conversation_id": conv_id, "message": "And in Korea?", "client_message_id": "msg_1753195300000_korea0001",
    }, format="json")
    assert sent.status_code == 200, sent.content
    data = sent.json()["data"]
    assert data["request_id"] == "msg_1753195300000_korea0001"

    conversations, _, _ = _pull(client, cursor)
    [conversation] = conversations
    by_id = {m["id"]: m for m in conversation["messages"]}
    question, answer = by_id["msg_1753195300000_korea0001"], by_id[data["message_id"]]
    assert question["prompt_tokens"] == data["usage"]["prompt_tokens"]
    assert answer["completion_tokens"] == data["usage"]["completion_tokens"]
    assert answer["user_message_id"] == question["id"]
    assert conversation["totalInputTokens"] == 32 + data["usage"]["prompt_tokens"]
    assert conversation["totalOutputTokens"] == 120 + data["usage"]["completion_tokens"]
    assert conversation["messageCount"] == 4

    # The phone pushes its copy, now naming the server's own messages: nothing changes.
    body["conversations"][0]["messages"] += [
        {"id": question["id"], "role": "user", "content": "And in Korea?", "prompt_tokens": 1},
        {"id": answer["id"], "role": "assistant", "content": answer["content"], "completion_tokens": 1,
         "user_message_id": question["id"]},
    ]
    replay = client.post("/api/v1/sync", body, format="json").json()
    assert replay["conversations"][0]["messages"] == {"created": 0, "updated": 0, "unchanged": 4}
    again, _, _ = _pull(client, None)
    assert again[0]["totalInputTokens"] == conversation["totalInputTokens"]


def _pull(client, since):
    conversations, deleted = [], []
    while True:
        data = client.get("/api/v1/sync", {"since": since} if since else {}).json()
        conversations += data["conversations"]
        deleted += data["deleted"]
        since = data["cursor"]
        if not data["has_more"]:
            return conversations, deleted, since
