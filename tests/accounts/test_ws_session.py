"""The WebSocket stack's session middleware: sessions still resolve, and a socket's frames go out
through the server's own `send` (channels' wrapper saves sessions only on HTTP responses)."""

from __future__ import annotations

import pytest
from channels.sessions import CookieMiddleware
from channels.testing import ApplicationCommunicator
from django.contrib.auth import SESSION_KEY
from django.test import Client

from accounts.ws_auth import SocketSessionMiddleware

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """An inner ASGI app that keeps the scope and the `send` it was handed, and answers once."""

    def __init__(self) -> None:
        self.scope = self.send = None

    async def __call__(self, scope, receive, send) -> None:
        self.scope, self.send = scope, send
        await receive()
        kind = "websocket.accept" if scope["type"] == "websocket" else "http.response.start"
        await send({"type": kind, "status": 200, "headers": []} if kind.startswith("http") else {"type": kind})


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def run(scope_type: str, cookie: bytes) -> tuple[Recorder, object, list]:
    inner = Recorder()
    app = CookieMiddleware(SocketSessionMiddleware(inner))
    scope = {"type": scope_type, "path": "/", "headers": [(b"cookie", cookie)]}
    if scope_type == "http":
        scope["method"] = "GET"
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "websocket.connect" if scope_type == "websocket" else "http.request"})
    sent = [await communicator.receive_output(timeout=5)]
    await communicator.wait(timeout=5)
    return inner, communicator, sent


async def test_a_socket_gets_the_servers_send_and_its_session(owner):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(session_cookie)(owner)
    inner, communicator, sent = await run("websocket", cookie)
    # ApplicationCommunicator hands the app its output queue's put: a socket's frames reach it unwrapped.
    assert inner.send == communicator.output_queue.put
    assert sent == [{"type": "websocket.accept"}]
    session = inner.scope["session"]
    assert await sync_to_async(session.get)(SESSION_KEY) == str(owner.pk)


async def test_http_keeps_the_wrapper_that_saves_sessions(owner):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(session_cookie)(owner)
    inner, communicator, sent = await run("http", cookie)
    assert inner.send != communicator.output_queue.put
    assert sent[0]["type"] == "http.response.start"
