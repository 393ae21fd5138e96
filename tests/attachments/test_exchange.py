"""Attachments in an exchange: every later message carries their text to the provider (the real
openai and google-genai SDKs against the local fakes), the figure shown before sending is
`stream_start.estimated_prompt_tokens`, and the usage row's metadata counts them."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from knox.models import AuthToken

from chat.attachments.models import Attachment
from chat.estimate import Draft, estimate_draft
from chat.models import Conversation
from tests.attachments.conftest import ARTICLE
from tests.attachments.helpers import make_pdf, upload
from tests.conftest import bearer_client
from tests.exchange.helpers import rows, types
from tests.exchange.test_http_doors import parse_sse

pytestmark = pytest.mark.django_db(transaction=True)

PDF_LINE = "Quarterly revenue rose twelve percent"
MARKDOWN = "# Launch notes\n\n* the *attachments* API ships on Tuesday"


@database_sync_to_async
def attach_three(owner, model: str, site) -> list[Attachment]:
    Conversation.objects.create(owner=owner, public_id="conv_ctx", title="Context", model=model)
    client = bearer_client(owner)
    base = "/api/v1/conversations/conv_ctx/attachments"
    for name, data in (("q3.pdf", make_pdf([PDF_LINE])), ("notes.md", MARKDOWN)):
        response = client.post(base, {"file": upload(name, data)}, format="multipart")
        assert response.status_code == 201, response.content
    response = client.post(base, {"url": site.page("/article.html", ARTICLE)}, format="json")
    assert response.status_code == 201, response.content
    return list(Attachment.objects.filter(conversation__public_id="conv_ctx"))


@database_sync_to_async
def draft_figure(owner, message: str) -> int:
    return estimate_draft(owner, Draft(message=message, conversation_id="conv_ctx"))["estimated_prompt_tokens"]


@database_sync_to_async
def token_for(owner) -> str:
    return AuthToken.objects.create(owner)[1]


async def stream(owner, body: dict) -> list[dict]:
    response = await AsyncClient().post("/api/v1/chat/stream", body, content_type="application/json",
                                        headers={"authorization": f"Bearer {await token_for(owner)}"})
    assert response.status_code == 200
    return parse_sse(b"".join([part async for part in response.streaming_content]))


def _assert_carried(text: str) -> None:
    assert PDF_LINE in text
    assert "the *attachments* API ships on Tuesday" in text
    assert "exactly one usage row" in text
    assert 'name="q3.pdf"' in text and 'kind="url"' in text


async def test_openai_receives_the_attachments_and_the_figures_agree(owner, fake_openai, site, allow_private):
    fake_openai.script(deltas=["Noted."], usage={"prompt_tokens": 777, "completion_tokens": 2})
    attachments = await attach_three(owner, "gpt-4o", site)
    before = await draft_figure(owner, "Summarise what I attached.")

    events = await stream(owner, {"message": "Summarise what I attached.", "conversation_id": "conv_ctx"})

    assert types(events)[-1] == "message_complete"
    [start] = [e for e in events if e["type"] == "stream_start"]
    assert start["estimated_prompt_tokens"] == before
    messages = fake_openai.last_request().body["messages"]
    assert messages[0]["role"] == "system"
    _assert_carried(messages[0]["content"])
    assert messages[-1] == {"role": "user", "content": "Summarise what I attached."}
    [row] = await rows(owner)
    assert row.metadata["file_count"] == 2 and row.metadata["url_count"] == 1
    assert row.metadata["attachment_tokens"] == sum(a.tokens for a in attachments) > 0
    assert row.metadata["estimated_prompt_tokens"] == before
    assert row.prompt_tokens == 777 and row.usage_source == "provider"  # the provider's figure is stored


async def test_every_later_message_carries_them_and_a_removed_one_is_gone(owner, fake_openai, site, allow_private):
    fake_openai.script(deltas=["Ok."], usage={"prompt_tokens": 50, "completion_tokens": 1})
    attachments = await attach_three(owner, "gpt-4o", site)
    await stream(owner, {"message": "First.", "conversation_id": "conv_ctx"})
    pdf = next(a for a in attachments if a.name == "q3.pdf")
    await database_sync_to_async(lambda: bearer_client(owner).delete(
        f"/api/v1/conversations/conv_ctx/attachments/{pdf.public_id}"))()
    before = await draft_figure(owner, "Second.")
    events = await stream(owner, {"message": "Second.", "conversation_id": "conv_ctx"})
    system = fake_openai.last_request().body["messages"][0]["content"]
    assert PDF_LINE not in system and "ships on Tuesday" in system
    assert [e for e in events if e["type"] == "stream_start"][0]["estimated_prompt_tokens"] == before
    latest = (await rows(owner))[-1]
    assert (latest.metadata["file_count"], latest.metadata["url_count"]) == (1, 1)


async def test_gemini_receives_them_as_text_and_its_own_figures_are_stored(owner, fake_gemini, site, allow_private):
    fake_gemini.script(deltas=["Seen."], usage={"prompt": 1234, "candidates": 2})
    await attach_three(owner, "gemini-2.5-flash", site)
    before = await draft_figure(owner, "What is in them?")
    events = await stream(owner, {"message": "What is in them?", "conversation_id": "conv_ctx"})
    assert [e for e in events if e["type"] == "stream_start"][0]["estimated_prompt_tokens"] == before
    body = fake_gemini.requests[-1].body
    instruction = body["systemInstruction"]["parts"][0]["text"]
    _assert_carried(instruction)
    [row] = await rows(owner)
    assert row.prompt_tokens == 1234 and row.metadata["file_count"] == 2


async def test_a_conversation_without_attachments_notes_none(owner, fake_openai):
    fake_openai.script(deltas=["Hi."], usage={"prompt_tokens": 9, "completion_tokens": 1})
    await database_sync_to_async(Conversation.objects.create)(owner=owner, public_id="conv_ctx", model="gpt-4o",
                                                              system_prompt="Be brief.")
    await stream(owner, {"message": "Hello", "conversation_id": "conv_ctx"})
    assert fake_openai.last_request().body["messages"][0] == {"role": "system", "content": "Be brief."}
    [row] = await rows(owner)
    assert (row.metadata["file_count"], row.metadata["url_count"], row.metadata["attachment_tokens"]) == (0, 0, 0)
