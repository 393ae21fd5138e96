"""Versions (issue 15, message actions): regenerating an answer and editing a message, through the
doors, down to what the provider is sent, what is billed and what the totals count."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db.models import Sum
from django.test import AsyncClient

from chat.exchange import parse_send_body, prepare_exchange, settle_interrupted_exchanges
from chat.models import Conversation, Message
from chatlima.errors import ClientError
from tests.exchange.helpers import rows
from tests.exchange.test_clamp import through
from tests.exchange.test_http_doors import bearer
from usage.models import ApiUsageLog

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "gpt-4o"
DOORS = ["websocket", "sse", "send"]


def asked(fake, index: int = -1) -> list[tuple[str, str]]:
    """(role, content) of the turns the fake provider was sent, system prompt left out."""
    return [(m["role"], m["content"]) for m in fake.requests[index].body["messages"] if m["role"] != "system"]


async def exchange(user, fake, text: str, msg_id: str, conversation_id: str | None = None,
                   prompt: int = 12, deltas=("An", " answer.")) -> dict:
    """One ordinary send over /send; the fake bills `prompt` tokens in and one per delta out."""
    fake.script(deltas, usage={"prompt_tokens": prompt, "completion_tokens": len(deltas)})
    body = {"message": text, "model": MODEL, "client_message_id": msg_id}
    if conversation_id:
        body["conversation_id"] = conversation_id
    status, data, _ = await through("send", user, body)
    assert status == 200, data
    return data


@database_sync_to_async
def messages_of(user, conversation_id: str) -> list[Message]:
    return list(Message.objects.filter(owner=user, conversation__public_id=conversation_id)
                .select_related("replaces", "user_message").order_by("timestamp", "pk"))


@database_sync_to_async
def totals_agree(user, conversation_id: str) -> tuple[Conversation, dict]:
    """The conversation's running totals, the ones derive_totals gives, and the usage rows' sums."""
    conv = Conversation.objects.get(owner=user, public_id=conversation_id)
    derived = Conversation.objects.get(pk=conv.pk)
    derived.recompute_totals(save=False)
    sums = ApiUsageLog.objects.filter(conversation=conv).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost_estimate"))
    assert conv.usage_dict() == derived.usage_dict()
    assert (conv.input_tokens, conv.output_tokens, conv.estimated_cost) == (
        sums["prompt"], sums["completion"], sums["cost"])
    return conv, sums


def answer_id(last: dict) -> str:
    """The stored answer's id in a door's last word (/send names it `message_id`)."""
    return last["message"]["id"] if "message" in last else last["message_id"]


def live(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages if m.superseded_at is None]


@pytest.mark.parametrize("door", DOORS)
async def test_regenerate_is_a_new_exchange_with_its_own_usage_row(owner, fake_openai, door):
    first = await exchange(owner, fake_openai, "Name a colour.", "msg_q1", prompt=12)
    conv_id = first["conversation_id"]
    fake_openai.script(("Blue", ", then", " green."), usage={"prompt_tokens": 15, "completion_tokens": 3})
    body = {"conversation_id": conv_id, "regenerate": first["message_id"], "client_message_id": "msg_regen1",
            "model": MODEL}
    status, _, last = await through(door, owner, body)
    assert status == 200 and last["type"] == "message_complete"
    assert last["request_id"] == "msg_regen1"
    # The question is the one asked before, its cost now over both sends.
    assert last["user_message"] == {"id": "msg_q1", "prompt_tokens": 12 + 15}
    if door != "send":
        assert last["message"]["replaces"] == first["message_id"] and last["message"]["superseded"] is False
    assert (last.get("response") or last.get("message", {}).get("content")) == "Blue, then green."
    # The provider was asked the same question, with no history before it.
    assert len(fake_openai.requests) == 2
    assert asked(fake_openai) == asked(fake_openai, 0) == [("user", "Name a colour.")]
    usage_rows = await rows(owner)
    assert [r.request_id for r in usage_rows] == ["msg_q1", "msg_regen1"]
    assert usage_rows[1].metadata["regenerates"] == first["message_id"]
    old, new = await database_sync_to_async(lambda: (
        Message.objects.get(owner=owner, public_id=first["message_id"]),
        Message.objects.get(owner=owner, public_id=answer_id(last))))()
    assert old.superseded_at is not None and new.superseded_at is None and new.replaces_id == old.pk
    assert usage_rows[1].message_id == new.pk
    conv, sums = await totals_agree(owner, conv_id)
    assert (sums["prompt"], sums["completion"]) == (27, 5)  # both versions stay counted
    assert conv.message_count == 3
    assert last["conversation_usage"] == conv.usage_dict()

    # A retry of the same regeneration replays it: no provider call, no second row.
    status, _, again = await through(door, owner, body)
    assert status == 200 and again["type"] == "message_complete"
    assert answer_id(again) == answer_id(last)
    assert again["user_message"]["id"] == "msg_q1"
    assert len(fake_openai.requests) == 2 and len(await rows(owner)) == 2


async def test_regenerate_sends_the_live_history_before_the_question(owner, fake_openai):
    first = await exchange(owner, fake_openai, "One?", "msg_h1")
    conv_id = first["conversation_id"]
    second = await exchange(owner, fake_openai, "Two?", "msg_h2", conv_id, deltas=("Second.",))
    status, _, last = await through("send", owner, {"conversation_id": conv_id, "regenerate": second["message_id"],
                                                    "client_message_id": "msg_h2r"})
    assert status == 200
    assert asked(fake_openai) == [("user", "One?"), ("assistant", "An answer."), ("user", "Two?")]
    # Regenerating the first answer takes everything after it out of the live thread.
    fake_openai.script(("Fresh.",))
    status, _, last = await through("send", owner, {"conversation_id": conv_id, "regenerate": first["message_id"],
                                                    "client_message_id": "msg_h1r"})
    assert status == 200
    assert asked(fake_openai) == [("user", "One?")]
    thread = await messages_of(owner, conv_id)
    assert live(thread) == [("user", "One?"), ("assistant", "Fresh.")]
    assert [m.public_id for m in thread if m.superseded_at is None][-1] == answer_id(last)
    await totals_agree(owner, conv_id)
    assert len(await rows(owner)) == 4
    # The next ordinary send continues from the live thread only.
    await exchange(owner, fake_openai, "Three?", "msg_h3", conv_id)
    assert asked(fake_openai) == [("user", "One?"), ("assistant", "Fresh."), ("user", "Three?")]


@pytest.mark.parametrize("door", DOORS)
async def test_edit_and_resend_continues_from_the_edited_message(owner, fake_openai, door):
    first = await exchange(owner, fake_openai, "Capital of France?", "msg_e1", prompt=10)
    conv_id = first["conversation_id"]
    second = await exchange(owner, fake_openai, "And of Spian?", "msg_e2", conv_id, prompt=20)
    fake_openai.script(("Madrid.",), usage={"prompt_tokens": 21, "completion_tokens": 1})
    status, _, last = await through(door, owner, {
        "conversation_id": conv_id, "edit_of": "msg_e2", "message": "And of Spain?",
        "client_message_id": "msg_e2b", "model": MODEL})
    assert status == 200 and last["type"] == "message_complete"
    assert last["user_message"] == {"id": "msg_e2b", "prompt_tokens": 21}
    assert asked(fake_openai) == [("user", "Capital of France?"), ("assistant", "An answer."), ("user", "And of Spain?")]
    thread = await messages_of(owner, conv_id)
    assert live(thread) == [("user", "Capital of France?"), ("assistant", "An answer."), ("user", "And of Spain?"),
                            ("assistant", "Madrid.")]
    by_id = {m.public_id: m for m in thread}
    assert by_id["msg_e2"].superseded_at is not None and by_id[second["message_id"]].superseded_at is not None
    assert by_id["msg_e2"].superseded_at == by_id[second["message_id"]].superseded_at  # one action, one moment
    assert by_id["msg_e2b"].replaces_id == by_id["msg_e2"].pk
    assert by_id["msg_e2"].prompt_tokens == 20  # what the earlier version cost stays on it
    conv, sums = await totals_agree(owner, conv_id)
    assert sums["prompt"] == 10 + 20 + 21 and conv.message_count == 6
    assert [r.request_id for r in await rows(owner)] == ["msg_e1", "msg_e2", "msg_e2b"]
    # A retry of the edit replays it.
    status, _, again = await through(door, owner, {
        "conversation_id": conv_id, "edit_of": "msg_e2", "message": "And of Spain?",
        "client_message_id": "msg_e2b", "model": MODEL})
    assert status == 200 and answer_id(again) == answer_id(last)
    assert len(fake_openai.requests) == 3 and len(await rows(owner)) == 3


async def test_editing_the_first_message_sends_no_history(owner, fake_openai):
    first = await exchange(owner, fake_openai, "Hi", "msg_f1")
    await exchange(owner, fake_openai, "More", "msg_f2", first["conversation_id"])
    status, _, _ = await through("send", owner, {"conversation_id": first["conversation_id"], "edit_of": "msg_f1",
                                                 "message": "Hello", "client_message_id": "msg_f1b"})
    assert status == 200
    assert asked(fake_openai) == [("user", "Hello")]
    assert live(await messages_of(owner, first["conversation_id"])) == [("user", "Hello"), ("assistant", "An answer.")]


@database_sync_to_async
def streaming_answer(user, conversation_id: str) -> str:
    """An answer still streaming (a prepared exchange not yet settled)."""
    prepared = prepare_exchange(user, parse_send_body({"conversation_id": conversation_id, "message": "Slow one",
                                                       "client_message_id": "msg_slow"}))
    return prepared.target.assistant_public_id


@pytest.mark.parametrize("door", ["sse", "send", "websocket"])
async def test_refusals_change_nothing(owner, stranger, fake_openai, door):
    first = await exchange(owner, fake_openai, "Question", "msg_r1")
    conv_id, answer = first["conversation_id"], first["message_id"]
    theirs = await exchange(stranger, fake_openai, "Theirs", "msg_t1")
    second = await exchange(owner, fake_openai, "Again", "msg_r2", conv_id)
    await through("send", owner, {"conversation_id": conv_id, "edit_of": "msg_r2", "message": "Again!",
                                  "client_message_id": "msg_r2b"})
    streaming = await streaming_answer(owner, conv_id)
    calls, count = len(fake_openai.requests), len(await rows(owner))
    refused = [
        ({"regenerate": theirs["message_id"]}, 400, "INVALID_MESSAGE", "regenerate"),  # a stranger's answer
        ({"regenerate": "msg_nosuch"}, 400, "INVALID_MESSAGE", "regenerate"),
        ({"regenerate": "msg_r1"}, 400, "INVALID_MESSAGE", "regenerate"),  # a user message
        ({"regenerate": second["message_id"]}, 400, "INVALID_MESSAGE", "regenerate"),  # superseded by the edit
        ({"regenerate": streaming}, 400, "INVALID_MESSAGE", "regenerate"),  # still streaming
        ({"regenerate": answer, "message": "x"}, 400, "INVALID_MESSAGE", "regenerate"),
        ({"regenerate": answer, "edit_of": "msg_r1", "message": "x"}, 400, "INVALID_MESSAGE", "regenerate"),
        ({"edit_of": answer, "message": "x"}, 400, "INVALID_MESSAGE", "edit_of"),  # not a user message
        ({"edit_of": "msg_r2", "message": "x"}, 400, "INVALID_MESSAGE", "edit_of"),  # superseded
        ({"edit_of": "msg_t1", "message": "x"}, 400, "INVALID_MESSAGE", "edit_of"),  # a stranger's
        ({"edit_of": "msg_r1", "message": "x"}, 400, "INVALID_MESSAGE", "edit_of"),  # a later answer streams
        ({"edit_of": "msg_r1"}, 400, "INVALID_MESSAGE", "message"),  # an edit needs its text
        ({"regenerate": answer, "conversation_id": theirs["conversation_id"]}, 404, "CONVERSATION_NOT_FOUND", None),
        # A regeneration's request id must be its own, not a message's.
        ({"client_message_id": "msg_r1", "regenerate": answer}, 400, "INVALID_MESSAGE", "client_message_id"),
    ]
    for extra, status, code, field in refused:
        body = {"conversation_id": conv_id, "client_message_id": "msg_new", **extra}
        got, _, error = await through(door, owner, body)
        assert (got if door != "websocket" else status) == status, (extra, error)
        assert error["code"] == code, (extra, error)
        if field:
            assert error["details"]["field"] == field, (extra, error)
    assert len(fake_openai.requests) == calls and len(await rows(owner)) == count


async def test_an_ordinary_send_cannot_take_a_regenerations_request_id(owner, fake_openai):
    first = await exchange(owner, fake_openai, "Q", "msg_o1")
    status, _, _ = await through("send", owner, {"conversation_id": first["conversation_id"],
                                                 "regenerate": first["message_id"], "client_message_id": "msg_o1r"})
    assert status == 200
    status, _, error = await through("send", owner, {"conversation_id": first["conversation_id"], "message": "Hi",
                                                     "client_message_id": "msg_o1r"})
    assert (status, error["code"], error["details"]["field"]) == (400, "INVALID_MESSAGE", "client_message_id")
    # Nor another regeneration of a different answer.
    status, _, error = await through("send", owner, {"conversation_id": first["conversation_id"],
                                                     "regenerate": "msg_o1", "client_message_id": "msg_o1r"})
    assert (status, error["code"]) == (400, "INVALID_MESSAGE")
    assert len(await rows(owner)) == 2


async def test_a_regeneration_cut_by_a_restart_still_adds_its_prompt_to_the_question(owner, fake_openai, settings):
    first = await exchange(owner, fake_openai, "Q", "msg_i1", prompt=12)

    @database_sync_to_async
    def prepare_and_abandon() -> None:
        prepared = prepare_exchange(owner, parse_send_body({
            "conversation_id": first["conversation_id"], "regenerate": first["message_id"],
            "client_message_id": "msg_i1r"}))
        Message.objects.filter(pk=prepared.target.assistant_pk).update(content="Partial answer")
        ApiUsageLog.objects.filter(pk=prepared.target.usage_log_id).update(created_at="2000-01-01T00:00Z")

    await prepare_and_abandon()
    assert await database_sync_to_async(settle_interrupted_exchanges)() == 1
    row = (await rows(owner, request_id="msg_i1r"))[0]
    assert row.status == "interrupted" and row.prompt_tokens > 0
    question = await database_sync_to_async(Message.objects.get)(owner=owner, public_id="msg_i1")
    assert question.prompt_tokens == 12 + row.prompt_tokens
    assert question.figures_source == "estimate"  # one of its sends was estimated
    await totals_agree(owner, first["conversation_id"])


async def test_rest_and_sync_carry_superseded_and_replaces(owner, fake_openai):
    first = await exchange(owner, fake_openai, "Q", "msg_s1")
    conv_id = first["conversation_id"]
    status, data, _ = await through("send", owner, {"conversation_id": conv_id, "regenerate": first["message_id"],
                                                    "client_message_id": "msg_s1r"})
    status, edited, _ = await through("send", owner, {"conversation_id": conv_id, "edit_of": "msg_s1",
                                                      "message": "Q2", "client_message_id": "msg_s1b"})
    assert status == 200
    client = AsyncClient()
    headers = await bearer(owner)
    conversation = (await client.get(f"/api/v1/conversations/{conv_id}", headers=headers)).json()
    shape = [(m["id"], m["superseded"], m["replaces"]) for m in conversation["messages"]]
    assert shape == [
        ("msg_s1", True, None), (first["message_id"], True, None), (data["message_id"], True, first["message_id"]),
        ("msg_s1b", False, "msg_s1"), (edited["message_id"], False, None),
    ]
    pulled = (await client.get("/api/v1/sync", headers=headers)).json()
    [synced] = [c for c in pulled["conversations"] if c["id"] == conv_id]
    assert [(m["id"], m["superseded"], m["replaces"]) for m in synced["messages"]] == shape
    usage = (await client.get(f"/api/v1/token-usage?conversation_id={conv_id}", headers=headers)).json()
    conv, sums = await totals_agree(owner, conv_id)
    assert usage["total_input_tokens"] == sums["prompt"] and Decimal(usage["total_estimated_cost"]) == sums["cost"]
    assert synced["totalInputTokens"] == sums["prompt"]
    # A device pushing back what it pulled changes nothing (the version fields are the server's).
    pushed = await client.post("/api/v1/sync", {"conversations": [synced]}, content_type="application/json",
                               headers=headers)
    assert pushed.status_code == 200, pushed.json()
    assert pushed.json()["conversations"][0]["status"] == "unchanged"
    assert [(m.public_id, m.superseded_at is not None) for m in await messages_of(owner, conv_id)] == [
        (i, s) for i, s, _ in shape]


def test_parallel_regenerations_of_one_answer_make_one_version_on_postgresql(owner, fake_openai):
    """Two tabs regenerating the same answer at once: one new version, the other refused, nothing
    half-written (the old answer is taken out of the thread by a compare-and-set)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("real parallel writers need PostgreSQL (SQLite takes one writer at a time)")
    first = async_to_sync(exchange)(owner, fake_openai, "Race me", "msg_p1")

    def attempt(i: int) -> str:
        try:
            prepare_exchange(owner, parse_send_body({"conversation_id": first["conversation_id"],
                                                     "regenerate": first["message_id"],
                                                     "client_message_id": f"msg_p1r{i}"}))
            return "prepared"
        except ClientError as err:
            return err.details.get("field", err.code)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(attempt, range(6)))
    assert results.count("prepared") == 1 and results.count("regenerate") == 5
    assert ApiUsageLog.objects.filter(user=owner).count() == 2
    live_answers = Message.objects.filter(owner=owner, role="assistant", superseded_at__isnull=True)
    assert live_answers.count() == 1 and live_answers.get().replaces.public_id == first["message_id"]
