"""A PDF, a Markdown file and a URL in context through every door (the WebSocket, SSE and /send),
and the figure shown before sending against what the provider then reports.

The fake OpenAI server (tests/fakes, driven by the real openai SDK) reports the prompt it was sent
as OpenAI counts one (each message's text by the BPE tokenizer, 3 tokens of framing per message
and 3 to prime the reply), so the provider's figure is measured, not scripted. The draft estimate
(POST /draft-estimate/'s `estimated_prompt_tokens`) must be `stream_start.estimated_prompt_tokens`
exactly, and the provider's prompt within the estimator's error: its framing allowance
(chat.providers.base.PER_MESSAGE_OVERHEAD, one more token a message than OpenAI's 3) on each
message, at most 2% of the prompt.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from chat.providers.base import PER_MESSAGE_OVERHEAD
from chatlima.asgi import application
from tests.attachments.test_exchange import PDF_LINE, attach_three, draft_figure, token_for
from tests.exchange.helpers import rows, types
from tests.exchange.test_http_doors import parse_sse
from usage.tokens import count_tokens

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-4o"
QUESTION = "Summarise what I attached, in one line."
OPENAI_FRAMING = 3  # tokens per message, and to prime the reply, in OpenAI's own count


def openai_prompt_tokens(body: dict) -> int:
    return OPENAI_FRAMING + sum(OPENAI_FRAMING + count_tokens(m["content"], MODEL) for m in body["messages"])


def report_measured_usage(fake) -> None:
    """The fake answers each request with the prompt tokens of what it received."""
    fake.script(deltas=["Revenue", " rose."])
    answer = fake.events_for

    def measured(recorded):
        body = recorded.body if isinstance(recorded.body, dict) else json.loads(recorded.body)
        fake.script(deltas=["Revenue", " rose."],
                    usage={"prompt_tokens": openai_prompt_tokens(body), "completion_tokens": 2})
        return answer(recorded)

    fake.events_for = measured


async def through_websocket(owner) -> tuple[list[dict], None]:
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={await token_for(owner)}",
                               headers=[(b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "send_message", "message": QUESTION, "conversation_id": "conv_ctx"})
    events: list[dict] = []
    while not events or events[-1]["type"] not in ("message_complete", "error"):
        events.append(await ws.receive_json_from(timeout=10))
    await ws.disconnect()
    return events, None


async def through_sse(owner) -> tuple[list[dict], None]:
    response = await AsyncClient().post(
        "/api/v1/chat/stream", {"message": QUESTION, "conversation_id": "conv_ctx"}, content_type="application/json",
        headers={"authorization": f"Bearer {await token_for(owner)}"})
    assert response.status_code == 200
    return parse_sse(b"".join([part async for part in response.streaming_content])), None


async def through_send(owner) -> tuple[list[dict], dict]:
    response = await AsyncClient().post(
        "/api/v1/chat/send", {"message": QUESTION, "conversation_id": "conv_ctx", "client_message_id": "msg_doors"},
        content_type="application/json", headers={"authorization": f"Bearer {await token_for(owner)}"})
    assert response.status_code == 200, response.content
    return [], response.json()["data"]


DOORS = {"websocket": through_websocket, "sse": through_sse, "send": through_send}


@pytest.mark.parametrize("door", list(DOORS))
async def test_every_door_carries_the_three_and_the_estimate_matches_the_providers_prompt(
        owner, fake_openai, site, allow_private, door):
    report_measured_usage(fake_openai)
    attachments = await attach_three(owner, MODEL, site)
    before = await draft_figure(owner, QUESTION)

    events, answer = await DOORS[door](owner)

    sent = fake_openai.last_request().body
    system = sent["messages"][0]["content"]
    assert sent["messages"][0]["role"] == "system"
    assert PDF_LINE in system and "ships on Tuesday" in system and "exactly one usage row" in system
    [row] = await rows(owner)
    reported = openai_prompt_tokens(sent)
    assert row.prompt_tokens == reported and row.usage_source == "provider"
    assert row.metadata["estimated_prompt_tokens"] == before
    assert (row.metadata["file_count"], row.metadata["url_count"]) == (2, 1)
    assert row.metadata["attachment_tokens"] == sum(a.tokens for a in attachments) > 0
    if answer is None:
        assert types(events)[-1] == "message_complete"
        [start] = [e for e in events if e["type"] == "stream_start"]
        assert start["estimated_prompt_tokens"] == before
        assert events[-1]["usage"]["prompt_tokens"] == reported
    else:
        assert answer["usage"]["prompt_tokens"] == reported and "Revenue rose." in answer["response"]
    # The estimator's error: its framing allowance on each message, and never over 2% of the prompt.
    error = abs(before - reported)
    assert error <= (PER_MESSAGE_OVERHEAD - OPENAI_FRAMING) * len(sent["messages"])
    assert error <= 0.02 * reported


@database_sync_to_async
def page_estimate(owner, body: dict) -> dict:
    client = Client()
    client.force_login(owner)
    response = client.post("/draft-estimate/", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


async def test_the_draft_estimate_says_the_attachments_share(owner, fake_openai, site, allow_private):
    attachments = await attach_three(owner, MODEL, site)
    with_them = await page_estimate(owner, {"message": QUESTION, "conversation_id": "conv_ctx"})
    assert with_them["attachment_tokens"] == sum(a.tokens for a in attachments)
    assert (with_them["file_count"], with_them["url_count"]) == (2, 1)
    # Their text and framing are in the prompt figure: more than their own tokens.
    bare = await page_estimate(owner, {"message": QUESTION})
    assert (bare["attachment_tokens"], bare["file_count"], bare["url_count"]) == (0, 0, 0)
    assert with_them["estimated_prompt_tokens"] > bare["estimated_prompt_tokens"] + with_them["attachment_tokens"]
