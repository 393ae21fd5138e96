"""Helpers for the REST API tests: the seed-000 sync body and small body builders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def seed_body() -> dict:
    """The mobile client's seed-000 push, plus the token fields it asks for."""
    body = json.loads((FIXTURES / "seed000_sync_request.json").read_text())
    user_message, answer = body["conversations"][0]["messages"]
    user_message["prompt_tokens"] = 32
    answer["completion_tokens"] = 120
    answer["user_message_id"] = user_message["id"]
    return body


@pytest.fixture
def seed() -> dict:
    return copy.deepcopy(seed_body())


def make_conversation(conv_id: str, n_messages: int = 2, *, updated: str = "2025-07-22T14:40:08.783Z", tokens: int = 10) -> dict:
    messages = []
    for k in range(n_messages):
        msg_id = f"{conv_id}_m{k}".replace("conv", "msg")
        if k % 2 == 0:
            messages.append({
                "id": msg_id, "role": "user", "content": f"question {k} of {conv_id}",
                "timestamp": f"2025-07-22T14:{k // 60:02d}:{k % 60:02d}.000Z", "originalModel": "offline-demo",
                "prompt_tokens": tokens,
            })
        else:
            messages.append({
                "id": msg_id, "role": "assistant", "content": f"answer {k} of {conv_id}",
                "timestamp": f"2025-07-22T14:{k // 60:02d}:{k % 60:02d}.500Z", "model": "offline-demo",
                "completion_tokens": tokens * 2, "total_tokens": tokens * 3, "user_message_id": messages[-1]["id"],
                "elapsed_time": 1, "contentType": "markdown", "completion_id": f"gen-{msg_id}",
            })
    return {
        "id": conv_id, "title": f"title of {conv_id}", "createdAt": "2025-07-22T14:00:00.000Z",
        "updatedAt": updated, "isActive": True, "messages": messages,
    }


def pull_all(client, since: str | None = None, limit: int = 100) -> tuple[list[dict], list[str], str]:
    conversations: list[dict] = []
    deleted: list[str] = []
    while True:
        params = {"limit": limit}
        if since:
            params["since"] = since
        response = client.get("/api/v1/sync", params)
        assert response.status_code == 200, response.content
        data = response.json()
        conversations += data["conversations"]
        deleted += data["deleted"]
        since = data["cursor"]
        if not data["has_more"]:
            return conversations, deleted, since


@pytest.fixture(scope="session", autouse=True)
def _drop_worker_connections(django_db_setup, django_db_blocker):
    """Threads (the exchange's workers, the concurrency tests) may leave connections open;
    end them so the PostgreSQL test database can be dropped."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
