"""The exchange pipeline itself (chat/exchange/) against the offline model."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from chat import exchange as pipeline
from chat.exchange import parse_send_body, start_exchange
from chat.models import Conversation, Message
from chatlima.errors import ClientError
from chatlima.formats import money_str
from tests.conftest import make_user
from tests.exchange.helpers import budget, holds, message, rows, run, set_limit, types
from usage.models import ApiUsageLog, BudgetReservation
from usage.tokens import count_tokens

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = ["message_saved", "stream_start"]


def _is_full_order(names: list[str]) -> bool:
    chunks = [n for n in names[2:-2]]
    return names[:2] == ORDER and names[-2:] == ["stream_end", "message_complete"] and chunks and set(chunks) == {"stream_chunk"}


async def test_offline_exchange_streams_events_in_order_with_stored_figures(owner):
    events = await run(owner, {"message": "Tell me about Japan's airports.", "client_message_id": "msg_1"})
    names = types(events)
    assert _is_full_order(names), names
    saved, start, *chunks, end, complete = events
    assert saved["message"]["id"] == "msg_1" and saved["message"]["role"] == "user"
    assert start["model"] == "offline-demo" and start["estimated_prompt_tokens"] > 0
    assert start["conversation_usage"]["message_count"] == 0
    running = [c["estimated_completion_tokens"] for c in chunks]
    assert running == sorted(running) and running[-1] > 0

    [row] = await rows(owner)
    assert row.status == "success" and row.request_id == "msg_1"
    assert row.response_time_ms is not None and row.time_to_first_token_ms is not None
    assert row.time_to_first_token_ms <= row.response_time_ms
    assert end["usage"] == complete["usage"] == {
        "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens, "cached_tokens": row.cached_tokens,
        "reasoning_tokens": row.reasoning_tokens,
    }
    assert row.total_tokens == row.prompt_tokens + row.completion_tokens
    assert complete["cost"]["estimated"] == money_str(row.cost_estimate)

    answer = await message(owner, complete["message"]["id"])
    assert answer.content == "".join(c["chunk"] for c in chunks)
    assert answer.status == "complete"
    assert answer.completion_tokens == row.completion_tokens and answer.total_tokens == row.total_tokens
    assert answer.user_message.public_id == "msg_1" and answer.user_message.prompt_tokens == row.prompt_tokens
    assert complete["message"]["content_html"]
    assert complete["user_message"] == {"id": "msg_1", "prompt_tokens": row.prompt_tokens}
    assert complete["conversation_usage"]["input_tokens"] == row.prompt_tokens
    assert complete["conversation_usage"]["output_tokens"] == row.completion_tokens
    assert complete["conversation_usage"]["message_count"] == 2
    b = await budget(owner)
    assert b.tokens_used == row.total_tokens and b.tokens_held == 0
    assert complete["budget"]["total_tokens_used"] == row.total_tokens
    assert await holds(owner) == 0 and await holds(owner, "settled") == 1


async def test_conversation_totals_accumulate_across_exchanges(owner):
    first = await run(owner, {"message": "One"})
    conversation_id = first[0]["conversation_id"]
    second = await run(owner, {"message": "Two", "conversation_id": conversation_id})
    assert second[1]["conversation_usage"] == first[-1]["conversation_usage"]
    all_rows = await rows(owner)
    assert len(all_rows) == 2
    totals = second[-1]["conversation_usage"]
    assert totals["input_tokens"] == sum(r.prompt_tokens for r in all_rows)
    assert totals["output_tokens"] == sum(r.completion_tokens for r in all_rows)
    assert totals["message_count"] == 4

    def recomputed():
        conversation = Conversation.objects.get(owner=owner, public_id=conversation_id)
        stored = conversation.usage_dict()
        conversation.recompute_totals(save=False)
        return stored, conversation.usage_dict()

    # The settle moves the totals incrementally; they must equal what recompute_totals() derives.
    stored, derived = await database_sync_to_async(recomputed)()
    assert stored == totals
    assert {k: v for k, v in stored.items() if k != "cost"} == {k: v for k, v in derived.items() if k != "cost"}
    assert Decimal(stored["cost"]) == Decimal(derived["cost"])


@pytest.mark.parametrize("body, field", [
    ({"message": ""}, "message"),
    ({"message": "   \n\t"}, "message"),
    ({"message": "x" * 32_001}, "message"),
    ({"message": "hi", "conversation_id": "bad id!"}, "conversation_id"),
    ({"message": "hi", "client_message_id": "x" * 65}, "client_message_id"),
    ({"message": "hi", "temperature": "hot"}, "temperature"),
    ({"message": "hi", "temperature": 3}, "temperature"),
    ({"message": "hi", "max_tokens": 0}, "max_tokens"),
    ({"message": "hi", "max_tokens": 1.5}, "max_tokens"),
    (["message"], "body"),
])
async def test_invalid_bodies_are_refused_before_anything_is_stored(owner, body, field):
    with pytest.raises(ClientError) as refused:
        await start_exchange(owner, body)
    assert refused.value.code == "INVALID_MESSAGE"
    assert refused.value.details.get("field") == field
    assert await rows(owner) == []


def test_the_seed_000_body_is_accepted():
    req = parse_send_body({
        "message": "How many international airport in Japan?",
        "messages": [{"id": "msg_1753195195759_ei5l6ns9o", "content": "How many international airport in Japan?",
                      "role": "user", "timestamp": "2025-07-22T14:39:55.759Z"}],
        "model": "offline-demo",
    })
    assert req.client_message_id == "msg_1753195195759_ei5l6ns9o"
    assert req.model == "offline-demo"


async def test_unknown_or_unconfigured_models_are_unavailable(owner, settings):
    with pytest.raises(ClientError) as unknown:
        await start_exchange(owner, {"message": "hi", "model": "no-such-model"})
    assert unknown.value.code == "MODEL_UNAVAILABLE"
    settings.PROVIDERS = {**settings.PROVIDERS, "openai": {"api_key": "", "base_url": None}}
    with pytest.raises(ClientError) as keyless:
        await start_exchange(owner, {"message": "hi", "model": "gpt-4o-mini"})
    assert keyless.value.code == "MODEL_UNAVAILABLE"
    assert await rows(owner) == []


async def test_another_users_conversation_looks_missing(owner, stranger):
    theirs = await run(stranger, {"message": "mine"})
    conversation_id = theirs[0]["conversation_id"]
    for body in ({"message": "hi", "conversation_id": conversation_id},
                 {"message": "hi", "conversation_id": "conv_does_not_exist"}):
        with pytest.raises(ClientError) as refused:
            await start_exchange(owner, body)
        assert refused.value.code == "CONVERSATION_NOT_FOUND"
        assert refused.value.details == {"conversation_id": body["conversation_id"]}
    assert await rows(owner) == []


async def test_two_users_may_use_the_same_client_message_id(owner, stranger):
    a = await run(owner, {"message": "hi", "client_message_id": "msg_same"})
    b = await run(stranger, {"message": "hi", "client_message_id": "msg_same"})
    assert types(a)[-1] == types(b)[-1] == "message_complete"


async def test_a_retried_client_message_id_returns_the_stored_result_without_a_provider_call(owner):
    first = await run(owner, {"message": "Hello", "client_message_id": "msg_retry"})
    conversation_id = first[0]["conversation_id"]
    again = await run(owner, {"message": "Hello", "client_message_id": "msg_retry"})
    also = await run(owner, {"message": "Hello", "client_message_id": "msg_retry", "conversation_id": conversation_id})
    assert len(await rows(owner)) == 1
    for replay in (again, also):
        assert replay[-1]["type"] == "message_complete"
        assert replay[-1]["message"]["id"] == first[-1]["message"]["id"]
        assert replay[-1]["usage"] == first[-1]["usage"]
        assert replay[0]["conversation_id"] == conversation_id
    assert (await budget(owner)).tokens_used == first[-1]["usage"]["total_tokens"]


async def test_a_client_message_id_from_another_conversation_is_invalid(owner):
    await run(owner, {"message": "Hello", "client_message_id": "msg_x"})
    other = await run(owner, {"message": "Other"})
    with pytest.raises(ClientError) as refused:
        await start_exchange(owner, {"message": "Hi", "client_message_id": "msg_x",
                                     "conversation_id": other[0]["conversation_id"]})
    assert refused.value.code == "INVALID_MESSAGE"


async def test_budget_refuses_before_any_provider_call(owner):
    await set_limit(owner, 10)
    with pytest.raises(ClientError) as refused:
        await start_exchange(owner, {"message": "Hello there", "max_tokens": 100})
    assert refused.value.code == "TOKEN_LIMIT_EXCEEDED"
    assert refused.value.details["token_limit"] == 10
    assert await rows(owner) == []
    assert await database_sync_to_async(lambda: Message.objects.filter(owner=owner).count())() == 0
    assert await database_sync_to_async(lambda: Conversation.objects.filter(owner=owner).count())() == 0
    assert await holds(owner) == 0


async def test_context_is_bounded_by_the_token_budget_not_a_message_count(owner, settings):
    first = await run(owner, {"message": "A" * 400})  # ~100 tokens, plus its answer
    conversation_id = first[0]["conversation_id"]
    await run(owner, {"message": "B" * 40, "conversation_id": conversation_id})

    def context(budget_tokens: int):
        settings.CHATLIMA_CONTEXT_TOKEN_BUDGET = budget_tokens
        conversation = Conversation.objects.get(owner=owner, public_id=conversation_id)
        return pipeline.build_context(conversation, None, "offline-demo")

    everything = await database_sync_to_async(context)(100_000)
    assert [t.role for t in everything] == ["user", "assistant", "user", "assistant"]
    assert everything[0].content == "A" * 400
    newest_two = sum(count_tokens(t.content, "offline-demo") for t in everything[2:])
    newest_only = await database_sync_to_async(context)(newest_two)
    assert [t.content for t in newest_only] == [t.content for t in everything[2:]]
    assert await database_sync_to_async(context)(0) == ()


async def test_closing_the_stream_mid_answer_keeps_the_partial_answer_and_its_usage(owner, paced):
    exchange = await start_exchange(owner, {"message": "Tell me a long story", "client_message_id": "msg_c"})
    seen = []
    async with aclosing(exchange.events()) as events:
        async for event in events:
            seen.append(event)
            if event["type"] == "stream_chunk" and len(seen) >= 4:
                break
    partial = "".join(e["chunk"] for e in seen if e["type"] == "stream_chunk")
    [row] = await rows(owner)
    assert row.status == "cancelled" and row.usage_source == "estimate"
    assert row.completion_tokens > 0 and row.total_tokens == row.prompt_tokens + row.completion_tokens
    answer = await message(owner, seen[1]["message_id"])
    assert answer.status == "cancelled"
    assert answer.content.startswith(partial) and answer.content
    assert answer.completion_tokens == row.completion_tokens
    assert await holds(owner) == 0 and await holds(owner, "released") == 1
    b = await budget(owner)
    assert b.tokens_held == 0 and b.tokens_used == row.total_tokens


async def test_a_cancel_mid_interval_keeps_what_was_read_but_not_yet_sent(owner, paced):
    """The relay (chat/exchange/relay.py) reads words while no frame is due: a cancel then loses
    none of them. One frame a second, a word every 15 ms, cancelled 300 ms after the first frame."""
    paced.CHATLIMA_STREAM_BATCH_MS = 1000
    exchange = await start_exchange(owner, {"message": "Tell me a long story", "client_message_id": "msg_mid"})
    first = asyncio.Event()
    sent: list[str] = []

    async def consume():
        async with aclosing(exchange.events()) as events:
            async for event in events:
                if event["type"] == "stream_chunk":
                    sent.append(event["chunk"])
                    first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await rows(owner)
    answer = await message(owner, exchange.prepared.target.assistant_public_id)
    assert row.status == answer.status == "cancelled"
    assert len(sent) == 1 and answer.content.startswith(sent[0])
    assert len(answer.content.split()) >= len(sent[0].split()) + 5  # the words read after the frame
    assert answer.completion_tokens == row.completion_tokens >= count_tokens(answer.content, "offline-demo")


async def test_a_cancelled_task_still_settles_even_when_cancelled_again_while_settling(owner, paced):
    exchange = await start_exchange(owner, {"message": "Tell me a long story", "client_message_id": "msg_cc"})
    got_chunk = asyncio.Event()

    async def consume():
        async with aclosing(exchange.events()) as events:
            async for event in events:
                if event["type"] == "stream_chunk":
                    got_chunk.set()

    task = asyncio.ensure_future(consume())
    await got_chunk.wait()
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # a second cancel lands while the settle is running
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        [row] = await rows(owner)
        if row.status != "pending":
            break
        await asyncio.sleep(0.02)
    assert row.status == "cancelled"
    assert await holds(owner) == 0


async def test_concurrent_exchanges_never_spend_more_than_the_budget(owner):
    first = await run(owner, {"message": "Measure me", "max_tokens": 50})
    one = first[-1]["usage"]["total_tokens"]
    # Room for the first settled exchange plus about three more holds of (prompt + 50).
    limit = one + 3 * (first[1]["estimated_prompt_tokens"] + 50) + 10
    await set_limit(owner, limit)

    async def attempt(i: int):
        try:
            return await run(owner, {"message": "Measure me", "max_tokens": 50})
        except ClientError as err:
            return err.code

    results = await asyncio.gather(*(attempt(i) for i in range(12)))
    refused = [r for r in results if r == "TOKEN_LIMIT_EXCEEDED"]
    done = [r for r in results if isinstance(r, list)]
    assert refused and done
    assert len(refused) + len(done) == 12
    b = await budget(owner)
    assert b.tokens_used <= limit
    assert b.tokens_held == 0 and await holds(owner) == 0
    assert len(await rows(owner)) == 1 + len(done)
    assert b.tokens_used == sum(r.total_tokens for r in await rows(owner))


async def test_the_settled_signal_is_sent_after_commit(owner):
    from usage.signals import exchange_settled

    received = []

    def listener(sender, user_id, usage_log_id, **kwargs):
        received.append((user_id, usage_log_id, transaction.get_connection().in_atomic_block))

    exchange_settled.connect(listener, dispatch_uid="test-listener")
    try:
        await run(owner, {"message": "Hello"})
    finally:
        exchange_settled.disconnect(dispatch_uid="test-listener")
    [row] = await rows(owner)
    assert received == [(owner.pk, row.pk, False)]


def _leave_pending(user, text: str, *, beat_seconds_ago: float = 60, request_id: str = "msg_dead"):
    """An exchange prepared and partly streamed (saved as the partial saver saves it) whose server
    last beat `beat_seconds_ago`."""
    from datetime import timedelta

    from django.utils import timezone

    from chat.partials import write_partials

    prepared = pipeline.prepare_exchange(user, pipeline.parse_send_body({"message": "Go on", "client_message_id": request_id}))
    write_partials([(prepared.target.assistant_pk, text, count_tokens(text, prepared.target.model))], [], [])
    Message.objects.filter(pk=prepared.target.assistant_pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=beat_seconds_ago))
    return prepared


def test_start_up_leaves_exchanges_another_server_is_streaming_alone(transactional_db):
    user = make_user("neighbour")
    live = _leave_pending(user, "Still streaming on the other server", beat_seconds_ago=0.5)
    never_beat = pipeline.prepare_exchange(user, pipeline.parse_send_body({"message": "Just started", "client_message_id": "msg_new"}))
    call_command("settle_interrupted")
    assert ApiUsageLog.objects.get(pk=live.target.usage_log_id).status == "pending"
    assert ApiUsageLog.objects.get(pk=never_beat.target.usage_log_id).status == "pending"
    assert BudgetReservation.objects.get(pk=live.target.reservation_id).state == "held"
    assert Message.objects.get(pk=live.target.assistant_pk).status == "streaming"


def test_an_interrupted_exchange_with_nothing_saved_is_not_charged(transactional_db):
    user = make_user("silent")
    prepared = _leave_pending(user, "")
    call_command("settle_interrupted")
    row = ApiUsageLog.objects.get(pk=prepared.target.usage_log_id)
    assert (row.status, row.usage_source, row.total_tokens, row.cost_estimate) == ("interrupted", "none", 0, Decimal("0"))
    assert row.metadata["estimated_prompt_tokens"] > 0
    user.budget.refresh_from_db()
    assert (user.budget.tokens_used, user.budget.tokens_held) == (0, 0)


def test_settle_interrupted_keeps_the_partial_answer_and_releases_the_hold(transactional_db):
    user = make_user("crashy")
    prepared = _leave_pending(user, "Half an answ")
    assert ApiUsageLog.objects.get(user=user).settled_at is None
    before = timezone.now()
    call_command("settle_interrupted")
    row = ApiUsageLog.objects.get(user=user)
    assert row.status == "interrupted" and row.usage_source == "estimate"
    assert before <= row.settled_at <= timezone.now()  # what beat's rollup refresh looks for
    assert row.completion_tokens > 0
    answer = Message.objects.get(pk=prepared.target.assistant_pk)
    assert (answer.status, answer.content) == ("interrupted", "Half an answ")
    assert BudgetReservation.objects.get(pk=prepared.target.reservation_id).state == "released"
    budget_row = user.budget
    budget_row.refresh_from_db()
    assert budget_row.tokens_held == 0 and budget_row.tokens_used == row.total_tokens
    # Settling again changes nothing.
    assert pipeline.settle_interrupted_exchanges() == 0


def test_the_periodic_sweep_settles_only_exchanges_whose_heartbeat_stopped(transactional_db):
    from chat.tasks import expire_reservations

    user = make_user("sweepy")
    dead = _leave_pending(user, "Dead")
    live = _leave_pending(user, "Alive and beating", beat_seconds_ago=1, request_id="msg_live")
    assert expire_reservations() == {"settled": 1, "expired": 0}
    assert ApiUsageLog.objects.get(pk=dead.target.usage_log_id).status == "interrupted"
    assert ApiUsageLog.objects.get(pk=live.target.usage_log_id).status == "pending"
    assert BudgetReservation.objects.get(pk=live.target.reservation_id).state == "held"


def test_expire_reservations_frees_holds_with_no_exchange(transactional_db):
    from datetime import timedelta

    from django.utils import timezone

    from chat.tasks import expire_reservations
    from usage import budgets

    user = make_user("orphan")
    with transaction.atomic():
        hold = budgets.reserve(user, "msg_orphan", 500, Decimal("0"))
    BudgetReservation.objects.filter(pk=hold.reservation_id).update(expires_at=timezone.now() - timedelta(seconds=5))
    assert expire_reservations() == {"settled": 0, "expired": 1}
    user.budget.refresh_from_db()
    assert user.budget.tokens_held == 0


async def test_a_provider_that_goes_quiet_times_out_and_releases_the_hold(owner, settings):
    settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS = 200
    settings.PROVIDER_TIMEOUT_SECONDS = 0.02
    settings.PROVIDER_MAX_RETRIES = 0
    events = await run(owner, {"message": "Anyone there?", "client_message_id": "msg_quiet"})
    names = types(events)
    assert names == ["message_saved", "stream_start", "error"]
    assert events[-1]["code"] == "TIMEOUT" and events[-1]["request_id"] == "msg_quiet"
    [row] = await rows(owner)
    # Nothing arrived and the provider reported nothing: nothing is charged.
    assert (row.status, row.prompt_tokens, row.total_tokens, row.usage_source) == ("timeout", 0, 0, "none")
    assert row.cost_estimate == Decimal("0") and row.metadata["estimated_prompt_tokens"] > 0
    assert row.response_time_ms is not None
    answer = await message(owner, events[1]["message_id"])
    streamed = "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")
    assert answer.status == "error" and answer.content == streamed
    assert answer.completion_tokens == row.completion_tokens
    assert await holds(owner) == 0 and await holds(owner, "released") == 1
    b = await budget(owner)
    assert b.tokens_held == 0 and b.tokens_used == row.total_tokens
    # The failed exchange is stored; retrying its id answers with the same error, no second call.
    again = await run(owner, {"message": "Anyone there?", "client_message_id": "msg_quiet"})
    assert again[-1]["type"] == "error" and again[-1]["code"] == "TIMEOUT"
    assert len(await rows(owner)) == 1


async def test_a_streaming_answer_is_saved_as_it_goes(owner, paced):
    paced.CHATLIMA_PARTIAL_SAVE_SECONDS = 0.01
    exchange = await start_exchange(owner, {"message": "Tell me a long story", "client_message_id": "msg_live"})
    streamed, stored = "", None
    async with aclosing(exchange.events()) as events:
        async for event in events:
            if event["type"] == "stream_chunk":
                streamed += event["chunk"]
                if len(streamed) > 80:
                    stored = await message(owner, exchange.prepared.start_event["message_id"])
                    break
    assert stored is not None and stored.status == "streaming"
    assert stored.content and streamed.startswith(stored.content)


async def test_a_synced_unanswered_user_message_is_answered_once(owner):
    first = await run(owner, {"message": "Start"})
    conversation_id = first[0]["conversation_id"]

    @database_sync_to_async
    def push_unanswered():
        conversation = Conversation.objects.get(owner=owner, public_id=conversation_id)
        Message.objects.create(owner=owner, conversation=conversation, role="user", content="Pushed question",
                               public_id="msg_pushed")

    await push_unanswered()
    events = await run(owner, {"message": "Pushed question", "client_message_id": "msg_pushed",
                               "conversation_id": conversation_id})
    assert events[-1]["type"] == "message_complete"
    assert events[0]["message"]["id"] == "msg_pushed"
    assert events[-1]["message"]["user_message_id"] == "msg_pushed"
    assert await database_sync_to_async(lambda: Message.objects.filter(owner=owner, public_id="msg_pushed").count())() == 1
    again = await run(owner, {"message": "Pushed question", "client_message_id": "msg_pushed"})
    assert again[-1]["message"]["id"] == events[-1]["message"]["id"]
    assert len(await rows(owner)) == 2
