"""A conversation's settings reach the provider (issue 15): the temperature, max_tokens and system
prompt it has (set on create, changed by PATCH) are what the real OpenAI SDK sends to the fake
server; a send's own temperature / max_tokens win for that send; the budget hold is the prompt plus
that max_tokens; a send that creates a conversation keeps its settings for the next one."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat.models import Conversation
from tests.exchange.test_http_doors import bearer
from usage.models import ApiUsageLog, BudgetReservation

pytestmark = pytest.mark.django_db(transaction=True)

CONV = "conv_1753195195759_settings2"
MODEL = "gpt-4o"  # served by the fake OpenAI-compatible server (max_tokens is `max_tokens` there)


async def api(user, method: str, path: str, body: dict | None = None):
    client = AsyncClient()
    call = getattr(client, method)
    kwargs = {"content_type": "application/json"} if body is not None else {}
    return await call(path, body, headers=await bearer(user), **kwargs) if body is not None else \
        await call(path, headers=await bearer(user))


async def send(user, body: dict) -> dict:
    response = await api(user, "post", "/api/v1/chat/send", body)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def system_of(request) -> str | None:
    first = request.body["messages"][0]
    return first["content"] if first["role"] == "system" else None


@database_sync_to_async
def usage_row(user, request_id: str) -> ApiUsageLog:
    return ApiUsageLog.objects.get(user=user, request_id=request_id)


@database_sync_to_async
def conversation(user, public_id: str) -> Conversation:
    return Conversation.objects.get(owner=user, public_id=public_id)


async def test_the_provider_receives_the_conversations_settings_and_patch_changes_them(owner, fake_openai):
    created = await api(owner, "post", "/api/v1/conversations", {
        "id": CONV, "model": MODEL, "system_prompt": "Answer like a pirate.", "temperature": 0.25, "max_tokens": 321,
    })
    assert created.status_code == 201, created.content
    answer = await send(owner, {"conversation_id": CONV, "message": "Hello", "client_message_id": "msg_set_1"})
    sent = fake_openai.last_request().body
    assert (sent["temperature"], sent["max_tokens"]) == (0.25, 321)
    assert system_of(fake_openai.last_request()) == "Answer like a pirate."
    assert answer["max_tokens"] == 321
    row = await usage_row(owner, "msg_set_1")
    assert row.metadata["max_tokens"] == 321
    # The hold was the prompt estimate plus that max_tokens (settled since, so read it from the row).
    assert row.metadata["estimated_prompt_tokens"] + 321 == await held_tokens(owner, row.metadata["reservation_id"])

    patched = await api(owner, "patch", f"/api/v1/conversations/{CONV}",
                        {"system_prompt": "Answer like a poet.", "temperature": 1.5, "max_tokens": 99})
    assert patched.status_code == 200, patched.content
    await send(owner, {"conversation_id": CONV, "message": "Again", "client_message_id": "msg_set_2"})
    sent = fake_openai.last_request().body
    assert (sent["temperature"], sent["max_tokens"]) == (1.5, 99)
    assert system_of(fake_openai.last_request()) == "Answer like a poet."

    # A send's own figures win for that send, and leave the conversation's alone.
    await send(owner, {"conversation_id": CONV, "message": "Once", "temperature": 0, "max_tokens": 50})
    sent = fake_openai.last_request().body
    assert (sent["temperature"], sent["max_tokens"]) == (0, 50)
    stored = await conversation(owner, CONV)
    assert (stored.temperature, stored.max_tokens) == (1.5, 99)

    cleared = await api(owner, "patch", f"/api/v1/conversations/{CONV}", {"temperature": None, "max_tokens": None})
    assert cleared.status_code == 200
    await send(owner, {"conversation_id": CONV, "message": "Defaults", "client_message_id": "msg_set_4"})
    sent = fake_openai.last_request().body
    assert "temperature" not in sent and sent["max_tokens"] == 2048  # the provider's own; CHATLIMA_DEFAULT_MAX_TOKENS
    assert (await usage_row(owner, "msg_set_4")).metadata["max_tokens"] == 2048


@database_sync_to_async
def held_tokens(user, reservation_id) -> int:
    return BudgetReservation.objects.get(user=user, pk=reservation_id).tokens


async def test_a_send_that_creates_the_conversation_keeps_its_settings(owner, fake_openai):
    first = await send(owner, {"message": "Start", "model": MODEL, "system_prompt": "Use short words.",
                               "temperature": 0.9, "max_tokens": 222})
    stored = await conversation(owner, first["conversation_id"])
    assert (stored.system_prompt, stored.temperature, stored.max_tokens) == ("Use short words.", 0.9, 222)
    await send(owner, {"conversation_id": first["conversation_id"], "message": "Next"})
    sent = fake_openai.last_request().body
    assert (sent["temperature"], sent["max_tokens"]) == (0.9, 222)
    assert system_of(fake_openai.last_request()) == "Use short words."
