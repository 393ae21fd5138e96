"""A conversation's preview (the sidebar's second line, `last_message_preview` in the API) is its
newest text: the answer once there is one. The settle after each exchange and `derive_totals` (sync,
repricing: the totals rule) agree, for an answer with text and for one that ended with none."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Message, preview_of
from tests.exchange.helpers import run

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored_and_derived(user) -> tuple[str, str, str]:
    conv = Conversation.objects.get(owner=user)
    stored = conv.last_message_preview
    answer = Message.objects.filter(conversation=conv, role="assistant").order_by("-timestamp").first()
    conv.recompute_totals(save=False)
    return stored, conv.last_message_preview, answer.content


async def test_after_an_answer_the_preview_is_the_answer_and_the_rule_agrees(owner):
    events = await run(owner, {"message": "What does the preview show?"})
    assert events[-1]["type"] == "message_complete"
    stored, derived, answer = await stored_and_derived(owner)
    assert answer and stored == derived == preview_of(answer)
    assert "What does the preview show?" not in stored

    conv_id = events[0]["conversation_id"]
    events = await run(owner, {"message": "And the second time?", "conversation_id": conv_id})
    stored, derived, answer = await stored_and_derived(owner)
    assert stored == derived == preview_of(answer)


async def test_an_answer_that_ended_with_no_text_leaves_the_question_in_both(owner, fake_openai):
    fake_openai.fail_next(400, times=1)
    events = await run(owner, {"message": "This one fails upstream", "model": "gpt-4o"})
    assert events[-1]["type"] == "error"
    stored, derived, answer = await stored_and_derived(owner)
    assert answer == "" and stored == derived == "This one fails upstream"


async def test_the_chat_page_lists_the_answer_as_the_preview(owner):
    events = await run(owner, {"message": "Preview on the page"})
    answer = events[-1]["message"]["content"]

    @database_sync_to_async
    def page() -> str:
        from django.test import Client

        client = Client()
        client.force_login(owner)
        return client.get("/").content.decode()

    html = await page()
    from chat.markdown import plain_text

    assert f'<span class="conv-preview">{plain_text(preview_of(answer))}' in html.replace("&#x27;", "'")
    assert '<span class="conv-preview">Preview on the page' not in html
