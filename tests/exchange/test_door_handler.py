"""The doors' own ASGI handler (chatlima/doors.py), through `chatlima.asgi.application` itself.

The streaming doors skip the pages' middleware stack; they must still authenticate both ways
(Bearer; session with its CSRF token), refuse bad input with the contract's body, carry the security
headers, and take no hop through Django's one thread-sensitive thread for middleware.
"""

from __future__ import annotations

import json

import pytest
from asgiref import sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.middleware.csrf import _get_new_csrf_string
from knox.models import AuthToken

from chatlima.asgi import application
from chatlima.doors import is_door
from tests.exchange.helpers import rows
from tests.exchange.test_http_doors import parse_sse

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def bearer(user) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {AuthToken.objects.create(user)[1]}".encode())]


@database_sync_to_async
def session_cookie(user) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return store.session_key


async def call(path: str, body: bytes, headers: list[tuple[bytes, bytes]], method: str = "POST") -> tuple[dict, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await app.receive_output(timeout=20)
    received = b""
    while True:
        message = await app.receive_output(timeout=20)
        received += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(timeout=20)
    start["headers"] = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start, received


@pytest.fixture
def sensitive_hops(monkeypatch) -> list[str]:
    """The names of the functions sent through Django's one thread-sensitive thread from now on
    (each `sync_to_async(thread_sensitive=True)` made), in order."""
    sensitive: list[str] = []
    original = sync.SyncToAsync.__init__

    def counting(self, func, thread_sensitive=True, *args, **kwargs):
        if thread_sensitive:
            sensitive.append(getattr(func, "__qualname__", repr(func)))
        original(self, func, thread_sensitive, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__init__", counting)
    return sensitive


def test_which_paths_are_doors():
    assert is_door("/api/v1/chat/stream") and is_door("/api/v1/chat/send") and is_door("/v1/chat/completions")
    assert not is_door("/api/v1/conversations") and not is_door("/") and not is_door("/api/v1/chat/streams")


async def test_sse_by_bearer_streams_with_the_security_headers(owner):
    start, raw = await call("/api/v1/chat/stream", json.dumps({"message": "Hello"}).encode(), await bearer(owner))
    assert start["status"] == 200 and start["headers"]["content-type"] == "text/event-stream"
    assert start["headers"]["x-content-type-options"] == "nosniff"  # SecurityMiddleware, inline
    events = parse_sse(raw)
    assert events[0]["type"] == "message_saved" and events[-1]["type"] == "message_complete"
    [row] = await rows(owner)
    assert row.status == "success" and row.metadata["door"] == "sse"


async def test_a_session_is_read_without_the_session_middleware_and_needs_its_csrf_token(owner):
    cookie = await session_cookie(owner)
    body = json.dumps({"message": "Hello"}).encode()
    refused, raw = await call("/api/v1/chat/send", body, [(b"cookie", f"sessionid={cookie}".encode())])
    assert refused["status"] == 403 and json.loads(raw)["error"]["code"] == "PERMISSION_DENIED"
    secret = _get_new_csrf_string()
    start, raw = await call("/api/v1/chat/send", body, [
        (b"cookie", f"sessionid={cookie}; csrftoken={secret}".encode()), (b"x-csrftoken", secret.encode()),
        (b"origin", b"http://testserver"), (b"referer", b"http://testserver/")])
    assert start["status"] == 200, raw
    assert json.loads(raw)["data"]["usage"]["total_tokens"] > 0
    assert "set-cookie" not in start["headers"]  # nothing wrote the session
    [row] = await rows(owner)
    assert row.metadata["door"] == "send"


async def test_no_credentials_and_bad_input_get_the_contracts_body(owner):
    start, raw = await call("/api/v1/chat/stream", b'{"message": "hi"}', [])
    assert start["status"] == 401 and json.loads(raw)["error"]["code"] == "UNAUTHENTICATED"
    start, raw = await call("/api/v1/chat/stream", b"{" * 5000, await bearer(owner))  # too deep: BadInputMiddleware
    assert 400 <= start["status"] < 500 and "error" in json.loads(raw)
    start, raw = await call("/api/v1/chat/stream", b"[]", await bearer(owner), method="GET")
    assert start["status"] == 405 and json.loads(raw)["error"]["code"]
    assert await rows(owner) == []


async def test_a_door_request_takes_no_hop_through_the_thread_sensitive_thread(owner, sensitive_hops):
    """Django's middleware hooks would each be a `sync_to_async(thread_sensitive=True)` call (12 for
    this request through the whole stack), and its ASGI handler sends request_started and
    request_finished through it too (2 more); the exchange's own database work goes through
    `run_db` (not thread-sensitive on PostgreSQL)."""
    headers = await bearer(owner)
    sensitive_hops.clear()  # from here on: the request's own
    start, _ = await call("/api/v1/chat/send", json.dumps({"message": "Hello"}).encode(), headers)
    assert start["status"] == 200
    middleware = [name for name in sensitive_hops if "Middleware" in name or "process_" in name]
    assert middleware == [], middleware
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        assert sensitive_hops == [], sensitive_hops  # the signals too are sent on the event loop


@pytest.fixture
def database_hops(monkeypatch) -> list[str]:
    """The functions the HTTP doors and the pipeline send through `chatlima.db.run_db` from now on."""
    import chat.exchange.stream
    import chat.stream_views
    from chatlima import db

    hops: list[str] = []

    async def counting(fn, *args, **kwargs):
        hops.append(getattr(fn, "__qualname__", repr(fn)))
        return await db.run_db(fn, *args, **kwargs)

    for module in (chat.exchange.stream, chat.stream_views):
        monkeypatch.setattr(module, "run_db", counting, raising=False)
    return hops


@pytest.mark.parametrize("path", ["/api/v1/chat/stream", "/api/v1/chat/send"])
async def test_an_http_door_checks_credentials_and_prepares_in_one_database_hop(owner, database_hops, path):
    """The Bearer check, the body and prepare share one hop (chat/stream_views.py `_open`); the
    settle is the other. Refusals still come before anything is stored."""
    headers = await bearer(owner)
    database_hops.clear()
    start, _ = await call(path, json.dumps({"message": "Hello"}).encode(), headers)
    assert start["status"] == 200
    assert database_hops == ["_open.<locals>.check_and_prepare", "_settle_and_describe"], database_hops
    database_hops.clear()
    start, raw = await call(path, b'{"message": ', headers)
    assert start["status"] == 400 and json.loads(raw)["error"]["code"] == "INVALID_MESSAGE"
    start, raw = await call(path, json.dumps({"message": "Hello"}).encode(), [(b"authorization", b"Bearer nope")])
    assert start["status"] == 401 and json.loads(raw)["error"]["code"] == "UNAUTHENTICATED"
    assert len(await rows(owner)) == 1


async def test_the_door_handler_sends_djangos_request_signals_once_each(owner):
    from django.core import signals

    seen: list[str] = []

    def started(sender, **kwargs):
        seen.append("started")

    def finished(sender, **kwargs):
        seen.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        start, _ = await call("/api/v1/chat/send", json.dumps({"message": "Hello"}).encode(), await bearer(owner))
        refused, _ = await call("/api/v1/chat/send", b"{}", [])
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert (start["status"], refused["status"]) == (200, 401)
    assert seen == ["started", "finished", "started", "finished"]


async def test_a_websocket_frame_takes_no_hop_to_tidy_connections(owner, sensitive_hops):
    """Channels' dispatch runs `close_old_connections` through the thread-sensitive thread before
    every message (connect, each frame, disconnect); the chat consumer's own dispatch does not (its
    database work is in `run_db`)."""
    from channels.testing import WebsocketCommunicator

    token = await database_sync_to_async(lambda: AuthToken.objects.create(owner)[1])()
    sensitive_hops.clear()  # from here on: the socket's own
    ws = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[(b"origin", b"http://testserver")])
    assert (await ws.connect())[0]
    await ws.send_json_to({"type": "send_message", "message": "Hello", "client_message_id": "msg_tidy"})
    while (await ws.receive_json_from(timeout=20))["type"] != "message_complete":
        pass
    await ws.disconnect()
    # Left: the one channels' websocket_disconnect makes as the socket ends (once per socket). It is
    # `no_op` when the disconnect runs while the communicator waits: channels' testing patches
    # `close_old_connections` with it then (channels/testing/application.py).
    tidies = [name for name in sensitive_hops if name in ("close_old_connections", "no_op")]
    assert len(tidies) == 1, sensitive_hops
    [row] = await rows(owner)
    assert row.status == "success"
