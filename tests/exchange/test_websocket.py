"""The WebSocket door, /ws/chat/, driven with Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from knox.models import AuthToken

from chatlima.asgi import application
from tests.exchange.helpers import budget, holds, message, rows, types

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


@database_sync_to_async
def token_for(user) -> str:
    return AuthToken.objects.create(user)[1]


async def connect(user, origin=ORIGIN) -> WebsocketCommunicator:
    token = await token_for(user)
    communicator = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[origin])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def until(communicator, last: set[str], request_id: str | None = None, timeout: float = 10) -> list[dict]:
    """Events up to and including the first whose type is in `last` (for `request_id`, when given)."""
    events = []
    while True:
        event = await communicator.receive_json_from(timeout=timeout)
        if request_id is None or event.get("request_id") == request_id:
            events.append(event)
            if event["type"] in last:
                return events


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5) -> int | None:
    """The close code of a socket the server closes, skipping the frames it sends before that."""
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def test_unauthenticated_sockets_are_accepted_then_closed_with_4401(db):
    # Accepted first: a close before the accept reaches a real client as an HTTP 403, not as 4401.
    for path in ["/ws/chat/", "/ws/chat/?token=not-a-token", "/ws/chat/?token=%00abc", "/ws/chat/?token=%FF%FE"]:
        communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
        assert await communicator.connect() == (True, None), path
        assert await closed_with(communicator) == 4401, path


async def test_frames_sent_to_a_socket_closing_with_4401_are_dropped(owner):
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "send_message", "message": "Let me in anyway"})
    await ws.send_json_to({"type": "ping"})
    assert await closed_with(ws) == 4401
    assert await ws.receive_nothing(timeout=0.5)
    assert await stored_messages(owner) == 0 and await rows(owner) == []


@pytest.mark.parametrize("cookie", [b'sessionid="\\000abcdefghij"', b"sessionid=abc\xff\xfedefghij",
                                    b"sessionid=" + b"a" * 5000, b"sessionid=%00aaaaaaaaaa"])
async def test_hostile_session_cookies_close_with_4401(db, cookie):
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie)])
    assert await ws.connect() == (True, None)
    assert await closed_with(ws) == 4401


async def test_a_token_client_needs_no_origin_header(owner):
    ws = await connect(owner, origin=(b"user-agent", b"okhttp/4.12"))
    await ws.send_json_to({"type": "send_message", "message": "From a phone", "client_message_id": "msg_app"})
    assert (await until(ws, {"message_complete", "error"}))[-1]["type"] == "message_complete"
    await ws.disconnect()


@database_sync_to_async
def browser_session(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_a_session_socket_needs_an_allowed_origin(owner):
    browser = await browser_session(owner)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, cookie])
    assert await ws.connect() == (True, None)
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}
    await ws.disconnect()
    # Without an Origin the cookie is not enough (a browser always sends one).
    bare = WebsocketCommunicator(application, "/ws/chat/", headers=[cookie])
    assert await bare.connect() == (True, None)
    assert await closed_with(bare) == 4401
    foreign = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://evil.example"), cookie])
    assert (await foreign.connect())[0] is False


@database_sync_to_async
def revoke_through_the_api(token: str) -> int:
    return Client().post("/api/v1/auth/revoke", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


@database_sync_to_async
def expire_tokens(user) -> None:
    from django.utils import timezone

    AuthToken.objects.filter(user=user).update(expiry=timezone.now())


@database_sync_to_async
def deactivate(user) -> None:
    type(user).objects.filter(pk=user.pk).update(is_active=False)


@pytest.mark.parametrize("how", ["revoked", "expired", "user deactivated"])
async def test_a_token_that_stops_authenticating_closes_its_socket_with_4401(owner, stranger, settings, how):
    settings.CHATLIMA_WS_AUTH_CHECK_SECONDS = 0.2
    token = await token_for(owner)
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[ORIGIN])
    assert (await ws.connect())[0]
    theirs = await connect(stranger)
    await asyncio.sleep(0.5)  # a few checks pass while the token is good
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from() == {"type": "pong"}
    if how == "revoked":
        assert await revoke_through_the_api(token) == 204
    elif how == "expired":
        await expire_tokens(owner)
    else:
        await deactivate(owner)
    assert await closed_with(ws, timeout=2) == 4401
    await theirs.send_json_to({"type": "ping"})
    assert await theirs.receive_json_from() == {"type": "pong"}  # someone else's socket lives on
    await theirs.disconnect()


async def test_logging_out_closes_the_sessions_socket_and_settles_its_exchange(owner, settings, paced):
    settings.CHATLIMA_WS_AUTH_CHECK_SECONDS = 0.2
    browser = await browser_session(owner)
    cookie = (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, cookie])
    assert (await ws.connect())[0]
    other_device = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "A long one please", "client_message_id": "msg_out"})
    await until(ws, {"stream_chunk"})
    await database_sync_to_async(browser.logout)()
    events = []
    while (output := await ws.receive_output(timeout=3))["type"] != "websocket.close":
        events.append(json.loads(output["text"]))
    assert output["code"] == 4401
    assert events[-1]["type"] == "error" and events[-1]["code"] == "CANCELLED"
    [row] = await rows(owner)
    assert row.status == "cancelled" and await holds(owner) == 0
    await other_device.send_json_to({"type": "ping"})
    assert await other_device.receive_json_from() == {"type": "pong"}  # a token is not the session
    await other_device.disconnect()


async def test_one_check_reads_all_sockets_credentials_in_two_queries(owner, stranger):
    from accounts.ws_auth import Credential, live_credentials

    @database_sync_to_async
    def check() -> tuple[set, set, int]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        tokens = [Credential("token", AuthToken.objects.create(user)[0].digest) for user in [owner, stranger] * 20]
        browsers = [Client() for _ in range(20)]
        for browser in browsers:
            browser.force_login(owner)
        sessions = [Credential("session", browser.session.session_key) for browser in browsers]
        AuthToken.objects.filter(digest=tokens[0].key).delete()
        browsers[0].logout()
        with CaptureQueriesContext(connection) as queries:
            live = live_credentials([*tokens, *sessions, Credential("token", "f" * 128)])
        return live, set(tokens[1:]) | set(sessions[1:]), len(queries)

    live, expected, queries = await check()
    assert live == expected
    assert queries == 2


async def test_other_origins_are_refused(owner):
    token = await token_for(owner)
    communicator = WebsocketCommunicator(application, f"/ws/chat/?token={token}",
                                         headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected


async def test_an_exchange_streams_in_order_and_matches_what_is_stored(owner):
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "Hi there", "client_message_id": "msg_ws1"})
    events = await until(ws, {"message_complete", "error"})
    names = types(events)
    assert names[:2] == ["message_saved", "stream_start"] and names[-2:] == ["stream_end", "message_complete"]
    assert set(names[2:-2]) == {"stream_chunk"}
    assert all(e["request_id"] == "msg_ws1" for e in events)
    [row] = await rows(owner)
    complete = events[-1]
    assert complete["usage"]["total_tokens"] == row.total_tokens
    answer = await message(owner, complete["message"]["id"])
    assert answer.content == "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")
    assert complete["budget"]["total_tokens_used"] == row.total_tokens
    await ws.disconnect()


async def test_cancel_keeps_the_partial_answer_and_ends_with_cancelled(owner, paced):
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "A long one please", "client_message_id": "msg_cx"})
    events = await until(ws, {"stream_chunk"})
    await ws.send_json_to({"type": "cancel", "request_id": "msg_cx"})
    events += await until(ws, {"message_complete", "error"})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "CANCELLED"
    assert "message_complete" not in types(events)
    [row] = await rows(owner)
    assert row.status == "cancelled" and row.completion_tokens > 0
    answer = await message(owner, events[1]["message_id"])
    streamed = "".join(e["chunk"] for e in events if e["type"] == "stream_chunk")
    assert answer.status == "cancelled" and answer.content.startswith(streamed) and answer.content
    assert await holds(owner) == 0
    assert (await budget(owner)).tokens_used == row.total_tokens
    await ws.disconnect()


async def test_disconnect_mid_stream_settles_as_cancelled(owner, paced):
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "A long one please", "client_message_id": "msg_dc"})
    events = await until(ws, {"stream_chunk"})
    await ws.disconnect()
    [row] = await rows(owner)
    assert row.status == "cancelled" and row.completion_tokens > 0
    answer = await message(owner, events[1]["message_id"])
    assert answer.status == "cancelled" and answer.content
    b = await budget(owner)
    assert b.tokens_held == 0 and b.tokens_used == row.total_tokens


async def test_one_exchange_at_a_time_per_conversation_but_several_per_socket(owner, paced):
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "First", "client_message_id": "msg_a1"})
    first = await until(ws, {"message_complete"}, "msg_a1")
    await ws.send_json_to({"type": "send_message", "message": "Second", "client_message_id": "msg_b1"})
    b_start = await until(ws, {"stream_start"}, "msg_b1")
    conv_a, conv_b = first[0]["conversation_id"], b_start[0]["conversation_id"]
    assert conv_a != conv_b
    # conv_b is busy; conv_a is free: one refused, one answered, on the same socket.
    await ws.send_json_to({"type": "send_message", "message": "Again", "conversation_id": conv_b,
                           "client_message_id": "msg_b2"})
    await ws.send_json_to({"type": "send_message", "message": "More", "conversation_id": conv_a,
                           "client_message_id": "msg_a2"})
    seen: dict[str, list[str]] = {}
    while not ({"msg_b1", "msg_a2"} <= {k for k, v in seen.items() if v[-1] in ("message_complete", "error")}
               and "msg_b2" in seen):
        event = await ws.receive_json_from(timeout=10)
        seen.setdefault(event.get("request_id"), []).append(event["type"])
    assert seen["msg_b2"] == ["error"]
    assert seen["msg_b1"][-1] == seen["msg_a2"][-1] == "message_complete"
    assert len(await rows(owner)) == 3
    await ws.disconnect()


async def test_bad_frames_get_an_error_and_the_socket_lives_on(owner):
    ws = await connect(owner)
    await ws.send_to(text_data="not json")
    assert (await ws.receive_json_from())["code"] == "INVALID_MESSAGE"
    await ws.send_json_to([1, 2, 3])
    assert (await ws.receive_json_from())["code"] == "INVALID_MESSAGE"
    await ws.send_json_to({"type": "launch_rockets"})
    assert (await ws.receive_json_from())["code"] == "INVALID_MESSAGE"
    await ws.send_json_to({"type": "send_message", "message": "   "})
    assert (await ws.receive_json_from())["code"] == "INVALID_MESSAGE"
    await ws.send_json_to({"type": "cancel", "request_id": "msg_nothing"})
    assert (await ws.receive_json_from())["type"] == "error"
    await ws.send_json_to({"type": "send_message", "message": "Still here?"})
    events = await until(ws, {"message_complete", "error"})
    assert events[-1]["type"] == "message_complete"
    await ws.disconnect()


@database_sync_to_async
def stored_messages(user) -> int:
    from chat.models import Message

    return Message.objects.filter(owner=user).count()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("frame", [
    '{"type": "send_message", "message": "deep", "extra": ' + nested(1000) + '}',
    nested(100_000),
    '{"type": "send_message", "message": "deep", "extra": ' + nested(64) + '}',  # 65 levels with the frame
    '{"type": "send_message", "message": "a\\u0000b"}',
    '{"type": "send_message", "message": "lone \\ud800 surrogate"}',
    '{"type": "send_message", "message": "lone \\udfff"}',
    '{"type": "send_message", "message": "ok", "client_message_id": "msg_\\u0000"}',
    '{"type": "send_message", "message": "ok", "\\ud83d": 1}',
    '{"type": "send_message", "message": "raw \x00 NUL"}',
    '{"type": "send_message", "message": "ok", "max_tokens": NaN}',
], ids=["1000-deep", "100000-deep", "65-deep", "NUL", "high-surrogate", "low-surrogate", "NUL-in-id",
        "surrogate-key", "raw-NUL", "NaN"])
async def test_frames_no_column_can_store_get_invalid_message_and_the_socket_lives_on(owner, frame):
    ws = await connect(owner)
    await ws.send_to(text_data=frame)
    event = await ws.receive_json_from()
    assert (event["type"], event["code"]) == ("error", "INVALID_MESSAGE"), event
    assert await rows(owner) == []
    assert await stored_messages(owner) == 0
    await ws.send_json_to({"type": "send_message", "message": "Still here? \U0001f600", "client_message_id": "msg_ok"})
    assert (await until(ws, {"message_complete", "error"}))[-1]["type"] == "message_complete"
    await ws.disconnect()


def test_frames_may_nest_64_levels_and_no_more():
    from chat.consumers import BadFrame, decode_frame

    assert decode_frame('{"a": ' + nested(63) + '}') == json.loads('{"a": ' + nested(63) + '}')
    with pytest.raises(BadFrame):
        decode_frame('{"a": ' + nested(64) + '}')
    assert decode_frame('{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}  # a pair is fine


async def test_another_users_conversation_is_not_found_over_the_socket(owner, stranger):
    theirs = await connect(stranger)
    await theirs.send_json_to({"type": "send_message", "message": "Private"})
    conversation_id = (await until(theirs, {"message_complete"}))[0]["conversation_id"]
    await theirs.disconnect()
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "Let me in", "conversation_id": conversation_id})
    event = await ws.receive_json_from()
    assert event["type"] == "error" and event["code"] == "CONVERSATION_NOT_FOUND"
    assert await rows(owner) == []
    await ws.disconnect()


async def test_budget_refusal_over_the_socket(owner):
    from tests.exchange.helpers import set_limit

    await set_limit(owner, 5)
    ws = await connect(owner)
    await ws.send_json_to({"type": "send_message", "message": "Hello", "client_message_id": "msg_poor"})
    event = await ws.receive_json_from()
    assert (event["type"], event["code"], event["request_id"]) == ("error", "TOKEN_LIMIT_EXCEEDED", "msg_poor")
    assert event["details"]["token_limit"] == 5
    await ws.disconnect()


async def test_many_sockets_stream_at_once(owner, paced):
    sockets = [await connect(owner) for _ in range(5)]
    for i, ws in enumerate(sockets):
        await ws.send_json_to({"type": "send_message", "message": f"Hello {i}"})
    results = await asyncio.gather(*(until(ws, {"message_complete", "error"}) for ws in sockets))
    assert all(r[-1]["type"] == "message_complete" for r in results)
    assert len(await rows(owner, status="success")) == 5
    for ws in sockets:
        await ws.disconnect()


@pytest.mark.parametrize("cancels", [1, 2, 3])
async def test_cancels_right_after_sending_settle_each_exchange_exactly_once(owner, paced, cancels):
    """Cancel frames that land while the exchange is still being prepared (10 sends in a row)."""
    ws = await connect(owner)
    for n in range(10):
        await ws.send_json_to({"type": "send_message", "message": f"Hello {n}", "client_message_id": f"msg_c{n}"})
        for _ in range(cancels):
            await ws.send_json_to({"type": "cancel", "request_id": f"msg_c{n}"})
    await asyncio.sleep(0.5)
    await ws.disconnect()

    @database_sync_to_async
    def answer_states() -> list[str]:
        from chat.models import Message

        return list(Message.objects.filter(owner=owner, role="assistant").values_list("status", flat=True))

    settled = await rows(owner)
    assert settled and all(row.status != "pending" for row in settled)
    assert len({row.request_id for row in settled}) == len(settled)
    assert await holds(owner) == 0
    assert "streaming" not in await answer_states()
    b = await budget(owner)
    assert b.tokens_held == 0 and b.tokens_used == sum(row.total_tokens for row in settled)
